"""``goodjob cron`` and ``goodjob pause`` / ``unpause``: what an operator changes at run time,
for every worker at once, without a restart."""

from __future__ import annotations

from typing import Any

import click

from goodjob.cli.options import DATABASE_SETTINGS, app_option, console, load_app, settings_options


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S %Z}" if value is not None else "-"


@click.group("cron")
def cron() -> None:
    """The app's cron entries: list them, enable or disable one, run one now."""


@cron.command("list")
@app_option
@settings_options(*DATABASE_SETTINGS)
def cron_list(app_spec: str | None, **settings: Any) -> None:
    """Every entry: key, expression, task, next run, last run enqueued, enabled."""
    gj = load_app(app_spec, settings)
    rows = [("key", "cron", "task", "next run", "last run", "enabled")]
    for entry in gj.cron_entries():
        rows.append(
            (
                entry.key,
                entry.expression,
                entry.task_name,
                _when(entry.next_at),
                _when(entry.last_at),
                "yes" if entry.enabled else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if len(rows) == 1:
        click.echo("(no cron entries)")


@cron.command("enable")
@app_option
@click.argument("key")
@settings_options(*DATABASE_SETTINGS)
def cron_enable(app_spec: str | None, key: str, **settings: Any) -> None:
    """Enable entry KEY in every process, from its next run."""
    load_app(app_spec, settings).enable_cron_entry(key)
    console.print(f"{key}: enabled")


@cron.command("disable")
@app_option
@click.argument("key")
@settings_options(*DATABASE_SETTINGS)
def cron_disable(app_spec: str | None, key: str, **settings: Any) -> None:
    """Disable entry KEY in every process: its runs enqueue nothing until enabled."""
    load_app(app_spec, settings).disable_cron_entry(key)
    console.print(f"{key}: disabled")


@cron.command("run")
@app_option
@click.argument("key")
@settings_options(*DATABASE_SETTINGS)
def cron_run(app_spec: str | None, key: str, **settings: Any) -> None:
    """Enqueue a run of entry KEY now."""
    job = load_app(app_spec, settings).run_cron_entry(key)
    console.print(f"{key}: enqueued job {job.id}")


def _target(queue: str | None, task: str | None, label: str | None) -> dict[str, str]:
    given = {k: v for k, v in (("queue", queue), ("task", task), ("label", label)) if v}
    if len(given) != 1:
        raise click.UsageError("name one of --queue, --task or --label")
    return given


_TARGET_OPTIONS = [
    click.option("--queue", help="a queue"),
    click.option("--task", help="a task, by its stored name"),
    click.option("--label", help="a label"),
]


def _targets(fn: Any) -> Any:
    for option in reversed(_TARGET_OPTIONS):
        fn = option(fn)
    return fn


@click.command("pause")
@app_option
@_targets
@click.option("--list", "show", is_flag=True, help="list what is paused")
@settings_options(*DATABASE_SETTINGS)
def pause(
    app_spec: str | None,
    queue: str | None,
    task: str | None,
    label: str | None,
    show: bool,
    **settings: Any,
) -> None:
    """Stop claiming the jobs of a queue, a task or a label (running jobs finish)."""
    gj = load_app(app_spec, settings)
    if show:
        paused = gj.paused()
        lines = [f"{kind} {name}" for kind, names in paused.items() for name in names]
        click.echo("\n".join(lines) if lines else "(nothing paused)")
        return
    target = _target(queue, task, label)
    gj.pause(**target)
    console.print(f"paused {' '.join(f'{k} {v}' for k, v in target.items())}")


@click.command("unpause")
@app_option
@_targets
@settings_options(*DATABASE_SETTINGS)
def unpause(
    app_spec: str | None, queue: str | None, task: str | None, label: str | None, **settings: Any
) -> None:
    """Claim the jobs of a paused queue, task or label again (workers wake at once)."""
    target = _target(queue, task, label)
    was = load_app(app_spec, settings).unpause(**target)
    what = " ".join(f"{k} {v}" for k, v in target.items())
    console.print(f"unpaused {what}" if was else f"{what} was not paused")


COMMANDS: list[click.Command] = [cron, pause, unpause]
