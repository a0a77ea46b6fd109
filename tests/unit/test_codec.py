"""The wire codec refuses what JSON cannot carry and names the culprit."""

import math

import pytest

from qtasks.core.codec import decode_envelope, encode_arguments, encode_envelope, encode_result
from qtasks.exceptions import MalformedMessage


def test_arguments_round_trip_as_json():
    args, kwargs = encode_arguments("t", (1, "a", [1, 2], {"k": None}, 2.5, True), {"x": (1, 2)})
    assert args == '[1,"a",[1,2],{"k":null},2.5,true]'
    assert kwargs == '{"x":[1,2]}'


@pytest.mark.parametrize("bad", [math.nan, -math.inf, {1}, b"x", object()])
def test_bad_argument_is_named(bad):
    with pytest.raises(TypeError, match=r"task 'job': argument 'deep'"):
        encode_arguments("job", (), {"deep": {"inner": [bad]}})


def test_result_that_json_cannot_carry():
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        encode_result({1, 2})


def test_envelope_round_trip_and_rejections():
    from uuid import uuid4

    uuid = uuid4()
    text = encode_envelope(uuid, "na:me", 3, "[1]", '{"a":2}', 12.5)
    env = decode_envelope(text)
    assert (env.uuid, env.task_name, env.priority, env.args, env.kwargs) == (uuid, "na:me", 3, [1], {"a": 2})
    for bad in ["", "[]", '{"v":1}', f'{{"v":2,"uuid":"{uuid}"}}']:
        with pytest.raises(MalformedMessage):
            decode_envelope(bad)


def test_an_envelope_reads_as_json_reads_it():
    """Bytes or text, with whitespace around it or not (a foreign producer's message): the
    same envelope; anything JSON would refuse is a MalformedMessage with JSON's reason."""
    from uuid import uuid4

    uuid = uuid4()
    text = encode_envelope(uuid, "t", 0, '["\u00e9"]', "{}", 1.0)
    for raw in (text, text.encode(), f" {text}\n", f"\t{text} ".encode()):
        env = decode_envelope(raw)
        assert (env.uuid, env.task_name, env.args) == (uuid, "t", ["é"])
    for bad, reason in [(text[:-1], "Expecting"), (text + "x", "Extra data"),
                        (b"\xff" + text.encode(), "not valid JSON"), (b"", "Expecting value"),
                        (None, "must be str, bytes")]:
        with pytest.raises(MalformedMessage, match=reason):
            decode_envelope(bad)  # type: ignore[arg-type]


def test_text_that_is_not_valid_unicode_is_refused_at_enqueue():
    from qtasks import QueueTasks

    app = QueueTasks("surrogate", broker_url="memory://surrogate")
    with pytest.raises(TypeError, match=r"argument 'note' \(str\).*lone surrogate"):
        app.add_task("job", 1, note="bad \ud800 text")
    with pytest.raises(TypeError, match=r"positional argument 0 \(dict\).*lone surrogate"):
        app.add_task("job", {"\udfff": 1})
    assert app.stats().queued == 0  # nothing was enqueued
    assert encode_arguments("job", ("ünïcode ✓",), {})[0] == '["ünïcode ✓"]'


def test_a_result_that_is_not_valid_unicode_is_refused():
    with pytest.raises(TypeError, match="lone surrogate"):
        encode_result(["\ud800"])
