def run(jobs: int, processes: int) -> int:
    return 0
