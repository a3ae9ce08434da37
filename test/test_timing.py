"""egnet_core.deploy.timing: what is called, how often and in which order (durations are not asserted)."""

from egnet_core.deploy.timing import interleaved, timed


def test_timed_calls_once_more_to_warm_up_and_returns_the_timed_calls():
    calls = []
    seconds = timed(lambda: calls.append(1), 3, warm_up=True)
    assert len(calls) == 4 and len(seconds) == 3 and all(s >= 0 for s in seconds)


def test_interleaved_rounds_call_each_function_once_starting_one_further_along_each_round():
    calls = []
    functions = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    seconds = interleaved(functions, 4)
    assert "".join(calls) == "abc" "bca" "cab" "abc"
    assert {name: len(times) for name, times in seconds.items()} == {"a": 4, "b": 4, "c": 4}
    pair = []
    interleaved({"int8": lambda: pair.append("int8"), "bf16": lambda: pair.append("bf16")}, 3)
    assert pair == ["int8", "bf16", "bf16", "int8", "int8", "bf16"]  # two alternate
