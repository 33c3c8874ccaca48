"""A Flask app that enqueues a job per signup; `flask --app flask_app goodjob start` runs them."""

from flask import Flask, request

from goodjob.contrib.flask import GoodJob

jobs = GoodJob()


@jobs.task(queue="mail")
def send_welcome(address: str) -> str:
    return f"welcome sent to {address}"


def create_app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(GOODJOB_QUEUES="mail:2", **config)  # any GOODJOB_* setting
    jobs.init_app(app)

    @app.post("/signup")
    def signup() -> tuple[dict[str, str], int]:
        job = send_welcome.enqueue(request.form["address"])
        return {"job": str(job.id)}, 202

    return app
