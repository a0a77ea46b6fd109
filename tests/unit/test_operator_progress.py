"""The progress of long operator commands: a bar on a terminal, plain lines when piped."""

import io

from qtasks.operator import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_progress_prints_a_line_every_thousand_and_at_the_end():
    out = io.StringIO()
    progress = Progress("requeued", 1200, out)
    for n in (500, 500, 200):
        progress.advance(n)
    progress.finish()
    assert out.getvalue().splitlines() == ["requeued: 1,000/1,200", "requeued: 1,200/1,200"]


def test_progress_on_a_terminal_is_one_bar_redrawn():
    out = Terminal()
    progress = Progress("purged", 10, out)
    for _ in range(10):
        progress.advance(1)
    progress.finish()
    text = out.getvalue()
    assert text.count("\r") == 11 and text.endswith("\n")
    assert "\rpurged [" + "#" * 30 + "] 10/10\n" in text
    assert "\rpurged [" + "#" * 15 + "." * 15 + "] 5/10" in text
