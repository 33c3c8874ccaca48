"""The README's testing example: goodjob.testing's helpers on the plugin's goodjob_app fixture
(pyproject.toml names the app: goodjob_app = "signup:gj")."""

from datetime import timedelta

from signup import send_reminder, send_welcome, signup

from goodjob.testing import assert_enqueued, drain, refute_enqueued


def test_signup_sends_a_welcome_now_and_a_reminder_a_day_later(goodjob_app):
    signup("ada@example.com")
    assert_enqueued(send_welcome, args=["ada@example.com"], queue="mail")

    [welcome] = drain(goodjob_app)  # runs it here, in the test's thread
    assert welcome.result == "welcome sent to ada@example.com"
    refute_enqueued(send_welcome)
    assert_enqueued(send_reminder, count=1)  # scheduled a day ahead: not run yet

    [reminder] = drain(goodjob_app, now=timedelta(days=1))  # a day later, without sleeping
    assert reminder.result == "reminder sent to ada@example.com"
