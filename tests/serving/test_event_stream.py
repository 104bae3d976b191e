"""Server-sent events: tokens that are already waiting go out in one write, with the same bytes as one write each."""

import json

import pytest
from flask import Flask

from textsvc.serving.http import event_stream


@pytest.mark.parametrize("behind", [False, True])
def test_waiting_events_go_out_together_with_the_same_bytes(behind):
    app, released = Flask(__name__), []
    events = [{"text": word} for word in ("one", " two", " three")]
    with app.test_request_context("/v1/completions", method="POST"):
        response = event_stream(iter(events), lambda: released.append(True), done="[DONE]", waiting=lambda: behind)
        writes = list(response.response)
    expected = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
    assert "".join(writes) == expected
    assert len(writes) == (1 if behind else 4)  # caught up in one write, or each event (and [DONE]) as it came
    assert released == [True]


def test_an_error_mid_stream_follows_the_events_that_waited_before_it():
    app = Flask(__name__)

    def failing():
        yield {"text": "one"}
        raise RuntimeError("the device went away")

    with app.test_request_context("/v1/completions", method="POST"):
        writes = list(event_stream(failing(), lambda: None, waiting=lambda: True).response)
    assert len(writes) == 1 and writes[0].startswith('data: {"text": "one"}\n\ndata: {"error"')
