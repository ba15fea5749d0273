"""
The official openai Python SDK against a live assistd, through its helpers: pagination, create_and_poll,
submit_tool_outputs_and_poll, the AssistantEventHandler streams, upload_and_poll, the error classes, raw responses,
the async client, and AzureOpenAI. Run by test/conformance/python-sdk.test.ts, which starts the server (with an API
key), a scripted model and a proxy that checks every JSON response against the official schema, and says where the
proxy is (ASSISTD_ROOT_URL) and what the key is (ASSISTD_API_KEY).

The scripted model answers by what it was last sent:
- a tool's output: "Tool said: <output>", or for a file_search output a sentence citing its first result;
- "weather" with the get_weather function offered: a call get_weather({"city": "Paris"});
- "espresso" with file_search offered: a file_search call;
- "compute" with code_interpreter offered: a python call printing 6 * 7;
- "slowly": forty words, 60 ms apart;
- "at length": two hundred words, a token each, cut at the request's max_tokens;
- anything else: "Echo: <the message>", streamed in pieces.

Prints one line per check, "ok <name>" or "not ok <name>" followed by the traceback; exits 1 if any failed.
"""

import asyncio
import json
import os
import sys
import traceback

import openai
from openai import AssistantEventHandler, AsyncAssistantEventHandler, AsyncOpenAI, AzureOpenAI, OpenAI
from typing_extensions import override

ROOT_URL = os.environ["ASSISTD_ROOT_URL"]
BASE_URL = ROOT_URL + "/v1"
KEY = os.environ["ASSISTD_API_KEY"]
MODEL = "gpt-test"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
COFFEE = b"The office espresso machine is descaled every Friday by the facilities team."
PARKING = b"Visitors park on level minus two of the garage; bring the blue ticket."
INCLUDE_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"

client = OpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0)
checks = []


def check(fn):
    checks.append(fn)
    return fn


def text_of(message):
    return "".join(part.text.value for part in message.content if part.type == "text")


def answer(thread_id):
    """The text of the thread's newest message."""
    newest = client.beta.threads.messages.list(thread_id=thread_id, order="desc", limit=1).data[0]
    assert newest.role == "assistant", newest.role
    return text_of(newest)


def assistant(**kwargs):
    return client.beta.assistants.create(model=MODEL, instructions="Be brief.", **kwargs)


class Recorder(AssistantEventHandler):
    """Records what the helper hands a program: the events' names, the text as deltas and as done, the tool calls."""

    def __init__(self):
        super().__init__()
        self.events = []
        self.deltas = []
        self.texts = []
        self.calls_created = []
        self.calls_done = []
        self.code_inputs = []
        self.logs = []

    @override
    def on_event(self, event):
        self.events.append(event.event)

    @override
    def on_text_delta(self, delta, snapshot):
        self.deltas.append(delta.value)

    @override
    def on_text_done(self, text):
        self.texts.append(text.value)

    @override
    def on_tool_call_created(self, tool_call):
        self.calls_created.append(tool_call.type)

    @override
    def on_tool_call_delta(self, delta, snapshot):
        if delta.type == "code_interpreter" and delta.code_interpreter:
            if delta.code_interpreter.input:
                self.code_inputs.append(delta.code_interpreter.input)
            for output in delta.code_interpreter.outputs or []:
                if output.type == "logs":
                    self.logs.append(output.logs)

    @override
    def on_tool_call_done(self, tool_call):
        self.calls_done.append(tool_call)


def assert_run_events(events, last):
    assert events[0] == "thread.run.created", events
    assert events[-1] == last, events
    assert events.index("thread.run.queued") < events.index("thread.run.in_progress"), events


@check
def assistants_are_created_paged_updated_and_deleted():
    ids = [assistant(name=f"pager {i}", metadata={"i": str(i)}).id for i in range(5)]
    listed = [a.id for a in client.beta.assistants.list(limit=2, order="desc")]
    assert listed[:5] == ids[::-1], (listed[:5], ids)
    first = client.beta.assistants.list(limit=2)
    assert first.has_next_page() and len(first.data) == 2
    assert first.get_next_page().data[0].id == ids[2]
    updated = client.beta.assistants.update(ids[0], name="renamed", metadata={"k": "v"})
    assert (updated.name, updated.metadata, updated.model) == ("renamed", {"k": "v"}, MODEL), updated
    assert client.beta.assistants.retrieve(ids[0]).name == "renamed"
    for assistant_id in ids:
        deleted = client.beta.assistants.delete(assistant_id)
        assert deleted.deleted and deleted.id == assistant_id and deleted.object == "assistant.deleted"


@check
def errors_raise_the_sdk_classes_with_message_param_and_request_id():
    try:
        client.beta.assistants.retrieve("asst_missing")
        raise AssertionError("retrieving a missing assistant succeeded")
    except openai.NotFoundError as error:
        assert error.status_code == 404
        assert error.body["message"] == "No assistant found with id 'asst_missing'.", error.body
        assert error.type == "invalid_request_error" and error.code is None and error.param is None
        assert error.request_id.startswith("req_"), error.request_id
    try:
        assistant(temperature=5)
        raise AssertionError("a temperature of 5 was taken")
    except openai.BadRequestError as error:
        assert error.status_code == 400 and error.param == "temperature", (error.param, error.body)
    try:
        OpenAI(base_url=BASE_URL, api_key="sk-wrong", max_retries=0).beta.assistants.list()
        raise AssertionError("a wrong key was taken")
    except openai.AuthenticationError as error:
        assert error.status_code == 401 and error.code == "invalid_api_key", error.body


@check
def threads_and_messages_are_created_listed_updated_and_deleted():
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": f"message {i}"} for i in range(3)], metadata={"user": "u1"}
    )
    assert thread.metadata == {"user": "u1"}
    client.beta.threads.messages.create(
        thread_id=thread.id, role="user", content=[{"type": "text", "text": "message 3"}]
    )
    texts = [text_of(m) for m in client.beta.threads.messages.list(thread_id=thread.id, order="asc", limit=1)]
    assert texts == [f"message {i}" for i in range(4)], texts
    message = client.beta.threads.messages.list(thread_id=thread.id, limit=1).data[0]
    updated = client.beta.threads.messages.update(message_id=message.id, thread_id=thread.id, metadata={"seen": "1"})
    assert updated.metadata == {"seen": "1"} and text_of(updated) == "message 3"
    assert client.beta.threads.messages.delete(message_id=message.id, thread_id=thread.id).deleted
    assert client.beta.threads.update(thread.id, metadata={"user": "u2"}).metadata == {"user": "u2"}
    assert client.beta.threads.delete(thread.id).deleted
    try:
        client.beta.threads.retrieve(thread.id)
        raise AssertionError("a deleted thread was found")
    except openai.NotFoundError:
        pass


@check
def create_and_poll_runs_to_completion():
    helper = assistant()
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello there"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=50)
    assert run.status == "completed", run.last_error
    assert run.usage is not None and run.usage.total_tokens > 0, run.usage
    assert answer(thread.id) == "Echo: hello there"
    steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id)
    assert [s.type for s in steps] == ["message_creation"], steps
    step = client.beta.threads.runs.steps.retrieve(step_id=steps.data[0].id, run_id=run.id, thread_id=thread.id)
    assert step.status == "completed" and step.step_details.type == "message_creation"


@check
def function_calls_pause_the_run_and_take_outputs_through_the_polling_helpers():
    helper = assistant(tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "What is the weather?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=50)
    assert run.status == "requires_action", run.status
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": calls[0].id, "output": "22C"}],
        poll_interval_ms=50,
    )
    assert run.status == "completed", run.last_error
    assert answer(thread.id) == "Tool said: 22C"
    steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id, order="asc")
    assert [s.type for s in steps] == ["tool_calls", "message_creation"], steps


@check
def a_paused_run_is_cancelled():
    helper = assistant(tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "weather, please"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=50)
    assert run.status == "requires_action"
    cancelled = client.beta.threads.runs.cancel(run_id=run.id, thread_id=thread.id)
    assert cancelled.status in ("cancelling", "cancelled"), cancelled.status
    run = client.beta.threads.runs.poll(run_id=run.id, thread_id=thread.id, poll_interval_ms=50)
    assert run.status == "cancelled", run.status


@check
def create_and_poll_outlasts_a_client_timeout_shorter_than_the_run():
    # The helper's polls carry the client's read timeout (x-stainless-read-timeout): each is answered before it.
    hasty = OpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0, timeout=1.0)
    helper = assistant()
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "tell it slowly"}])
    run = hasty.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=50)
    assert run.status == "completed", run.status
    assert answer(thread.id).startswith("Echo: word 0 word 1")


@check
def a_stream_cut_by_the_deletion_of_its_thread_raises():
    helper = assistant()
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "go on slowly"}])

    class DeletesTheThread(Recorder):
        @override
        def on_text_delta(self, delta, snapshot):
            super().on_text_delta(delta, snapshot)
            if len(self.deltas) == 1:
                client.beta.threads.delete(thread.id)

    handler = DeletesTheThread()
    try:
        with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=helper.id, event_handler=handler) as s:
            s.until_done()
        raise AssertionError(f"the stream ended as if the run were over: {handler.events}")
    except openai.APIError as error:
        assert "thread.run.completed" not in handler.events, handler.events
        assert error.message, error


@check
def none_for_an_optional_field_is_taken_as_left_out():
    # What programs that dump their own objects send (AutoGen's tool_resources, tools=None).
    helper = client.beta.assistants.create(
        model=MODEL, tools=None, metadata=None, tool_resources={"file_search": None, "code_interpreter": None}
    )
    assert helper.tools == [] and helper.metadata == {}, helper
    kept = client.beta.assistants.update(helper.id, metadata={"k": "v"})
    assert client.beta.assistants.update(helper.id, metadata=None, name="again").metadata == kept.metadata


@check
def run_parameters_listing_and_filters_round_trip():
    helper = assistant(tools=[{"type": "file_search"}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "tell it at length"}])
    cut = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=helper.id, max_completion_tokens=16, poll_interval_ms=50,
        # As a program that dumps an AssistantToolChoice sends it (function None), and a temperature override.
        tool_choice={"type": "file_search", "function": None}, temperature=0.2, metadata={"try": "1"},
    )
    assert cut.status == "incomplete", cut.status
    assert cut.incomplete_details.reason == "max_completion_tokens", cut.incomplete_details
    assert (cut.max_completion_tokens, cut.temperature, cut.tool_choice.type) == (16, 0.2, "file_search"), cut
    assert cut.usage.completion_tokens <= 16, cut.usage
    assert client.beta.threads.runs.update(run_id=cut.id, thread_id=thread.id, metadata={"try": "2"}).metadata == {
        "try": "2"
    }
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content="and now briefly")
    done = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=50)
    assert done.status == "completed", done.last_error
    runs = list(client.beta.threads.runs.list(thread_id=thread.id, limit=1))
    assert [r.id for r in runs] == [done.id, cut.id], runs
    answers = client.beta.threads.messages.list(thread_id=thread.id, run_id=done.id).data
    assert [text_of(m) for m in answers] == ["Echo: and now briefly"], answers
    cut_message = client.beta.threads.messages.list(thread_id=thread.id, run_id=cut.id).data[0]
    assert cut_message.status == "incomplete" and cut_message.incomplete_details.reason == "max_tokens", cut_message


@check
def an_image_file_uploaded_for_vision_goes_into_a_message():
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
    image = client.files.create(file=("dot.png", png), purpose="vision")
    assert image.purpose == "vision"
    thread = client.beta.threads.create()
    message = client.beta.threads.messages.create(
        thread_id=thread.id,
        role="user",
        content=[
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_file", "image_file": {"file_id": image.id, "detail": "low"}},
        ],
    )
    assert [part.type for part in message.content] == ["text", "image_file"], message.content
    assert (message.content[1].image_file.file_id, message.content[1].image_file.detail) == (image.id, "low")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant().id, poll_interval_ms=50)
    assert run.status == "completed", run.last_error
    assert answer(thread.id) == "Echo: What is in this picture?"


@check
def a_streamed_run_reaches_the_event_handler_and_the_final_helpers():
    helper = assistant()
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "stream this"}])
    handler = Recorder()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=helper.id, event_handler=handler) as stream:
        stream.until_done()
        final_run = stream.get_final_run()
        final_messages = stream.get_final_messages()
    assert_run_events(handler.events, "thread.run.completed")
    assert len(handler.deltas) > 1 and "".join(handler.deltas) == "Echo: stream this", handler.deltas
    assert handler.texts == ["Echo: stream this"], handler.texts
    assert final_run.status == "completed"
    assert [text_of(m) for m in final_messages] == ["Echo: stream this"]
    assert final_messages[0].status == "completed"
    assert answer(thread.id) == "Echo: stream this"


@check
def a_raw_stream_yields_every_event_typed():
    # stream=True without the helpers: the SDK's Stream of AssistantStreamEvent, as many programs iterate it.
    helper = assistant()
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "raw events"}])
    events = list(client.beta.threads.runs.create(thread_id=thread.id, assistant_id=helper.id, stream=True))
    names = [e.event for e in events]
    assert names[0] == "thread.run.created" and names[-1] == "thread.run.completed", names
    deltas = [e.data.delta.content[0].text.value for e in events if e.event == "thread.message.delta"]
    assert "".join(deltas) == "Echo: raw events", deltas
    completed = next(e.data for e in events if e.event == "thread.message.completed")
    assert text_of(completed) == "Echo: raw events" and completed.status == "completed", completed
    assert type(events[-1]).__name__ == "ThreadRunCompleted", type(events[-1])


@check
def a_streamed_function_call_is_answered_through_submit_tool_outputs_stream():
    helper = assistant(tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "the weather, streamed"}])
    first = Recorder()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=helper.id, event_handler=first) as stream:
        stream.until_done()
    assert_run_events(first.events, "thread.run.requires_action")
    run = first.current_run
    assert run.status == "requires_action" and first.calls_created == ["function"], (run.status, first.calls_created)
    call = first.calls_done[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    second = Recorder()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}],
        event_handler=second,
    ) as stream:
        stream.until_done()
    assert second.events[-1] == "thread.run.completed", second.events
    assert second.texts == ["Tool said: sunny"], second.texts


@check
def create_and_run_polls_and_streams():
    helper = assistant()
    run = client.beta.threads.create_and_run_poll(
        assistant_id=helper.id, thread={"messages": [{"role": "user", "content": "new thread"}]}, poll_interval_ms=50
    )
    assert run.status == "completed" and answer(run.thread_id) == "Echo: new thread"
    handler = Recorder()
    with client.beta.threads.create_and_run_stream(
        assistant_id=helper.id, thread={"messages": [{"role": "user", "content": "streamed thread"}]},
        event_handler=handler,
    ) as stream:
        stream.until_done()
    assert handler.events[0] == "thread.created", handler.events
    assert handler.texts == ["Echo: streamed thread"], handler.texts


@check
def files_are_uploaded_read_listed_and_deleted():
    uploaded = client.files.create(file=("notes.txt", b"line one\nline two\n"), purpose="assistants")
    assert (uploaded.filename, uploaded.bytes, uploaded.purpose) == ("notes.txt", 18, "assistants"), uploaded
    assert client.files.retrieve(uploaded.id).filename == "notes.txt"
    assert client.files.content(uploaded.id).content == b"line one\nline two\n"
    with client.files.with_streaming_response.content(uploaded.id) as response:
        assert b"".join(response.iter_bytes()) == b"line one\nline two\n"
    assert uploaded.id in [f.id for f in client.files.list(purpose="assistants")]
    assert client.files.delete(uploaded.id).deleted


@check
def raw_responses_carry_the_request_id():
    raw = client.beta.assistants.with_raw_response.list(limit=1)
    assert raw.headers.get("x-request-id", "").startswith("req_"), dict(raw.headers)
    assert raw.http_request.url.path.endswith("/assistants")
    assert raw.parse().object == "list"


@check
def file_search_answers_cite_files_uploaded_through_upload_and_poll():
    store = client.vector_stores.create(name="office")
    batch = client.vector_stores.file_batches.upload_and_poll(
        vector_store_id=store.id, files=[("coffee.txt", COFFEE), ("parking.md", PARKING)], poll_interval_ms=50
    )
    assert batch.status == "completed" and batch.file_counts.completed == 2, batch
    files = list(client.vector_stores.files.list(vector_store_id=store.id))
    assert len(files) == 2 and all(f.status == "completed" for f in files), files
    helper = assistant(tools=[{"type": "file_search"}], tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "When is the espresso machine descaled?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=50)
    assert run.status == "completed", run.last_error
    message = client.beta.threads.messages.list(thread_id=thread.id, limit=1).data[0]
    annotations = message.content[0].text.annotations
    coffee = next(f.id for f in client.files.list() if f.filename == "coffee.txt")
    assert [(a.type, a.file_citation.file_id) for a in annotations] == [("file_citation", coffee)], annotations
    steps = client.beta.threads.runs.steps.list(
        run_id=run.id, thread_id=thread.id, order="asc", include=[INCLUDE_CONTENT]
    ).data
    results = steps[0].step_details.tool_calls[0].file_search.results
    assert results[0].file_name == "coffee.txt" and results[0].content[0].text.startswith("The office espresso"), results
    single = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("more.txt", b"More notes."))
    assert single.status == "completed", single
    assert client.vector_stores.retrieve(store.id).file_counts.completed == 3
    assert client.vector_stores.delete(store.id).deleted


@check
def code_interpreter_streams_its_input_and_logs():
    helper = assistant(tools=[{"type": "code_interpreter"}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "compute six times seven"}])
    handler = Recorder()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=helper.id, event_handler=handler) as stream:
        stream.until_done()
    assert handler.events[-1] == "thread.run.completed", handler.events
    assert handler.calls_created == ["code_interpreter"], handler.calls_created
    assert "".join(handler.code_inputs) == "print(6 * 7)", handler.code_inputs
    assert handler.logs == ["42\n"], handler.logs
    done = handler.calls_done[0].code_interpreter
    assert done.input == "print(6 * 7)" and done.outputs[0].logs == "42\n", done
    assert handler.texts == ["Tool said: 42\n"], handler.texts


@check
def the_async_client_pages_polls_and_streams():
    async def main():
        aclient = AsyncOpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0)
        helper = await aclient.beta.assistants.create(model=MODEL, tools=[WEATHER])
        thread = await aclient.beta.threads.create(
            messages=[{"role": "user", "content": f"async {i}"} for i in range(3)]
        )
        texts = [text_of(m) async for m in aclient.beta.threads.messages.list(thread_id=thread.id, limit=1, order="asc")]
        assert texts == ["async 0", "async 1", "async 2"], texts
        run = await aclient.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=50
        )
        assert run.status == "completed" and answer(thread.id) == "Echo: async 2"

        class Texts(AsyncAssistantEventHandler):
            def __init__(self):
                super().__init__()
                self.texts = []

            @override
            async def on_text_done(self, text):
                self.texts.append(text.value)

        await aclient.beta.threads.messages.create(thread_id=thread.id, role="user", content="async weather")
        handler = Texts()
        async with aclient.beta.threads.runs.stream(
            thread_id=thread.id, assistant_id=helper.id, event_handler=handler
        ) as stream:
            await stream.until_done()
        run = handler.current_run
        assert run.status == "requires_action", run.status
        call = run.required_action.submit_tool_outputs.tool_calls[0]
        handler = Texts()
        async with aclient.beta.threads.runs.submit_tool_outputs_stream(
            run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "rain"}],
            event_handler=handler,
        ) as stream:
            await stream.until_done()
        assert handler.texts == ["Tool said: rain"], handler.texts
        assert (await aclient.beta.assistants.delete(helper.id)).deleted
        await aclient.close()

    asyncio.run(main())


@check
def azure_clients_run_unchanged():
    azure = AzureOpenAI(azure_endpoint=ROOT_URL, api_key=KEY, api_version="2024-05-01-preview", max_retries=0)
    raw = azure.beta.assistants.with_raw_response.create(model=MODEL, tools=[WEATHER])
    sent = raw.http_request
    assert sent.url.path == "/openai/assistants" and sent.url.params["api-version"] == "2024-05-01-preview", sent.url
    assert sent.headers["api-key"] == KEY, dict(sent.headers)
    helper = raw.parse()
    thread = azure.beta.threads.create(messages=[{"role": "user", "content": f"azure {i}"} for i in range(3)])
    azure.beta.threads.messages.create(thread_id=thread.id, role="user", content="the weather in azure")
    run = azure.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=helper.id, poll_interval_ms=50)
    assert run.status == "requires_action", run.status
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    run = azure.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "18C"}], poll_interval_ms=50
    )
    assert run.status == "completed" and answer(thread.id) == "Tool said: 18C", run.status
    azure.beta.threads.messages.create(thread_id=thread.id, role="user", content="stream from azure")
    handler = Recorder()
    with azure.beta.threads.runs.stream(thread_id=thread.id, assistant_id=helper.id, event_handler=handler) as stream:
        stream.until_done()
    assert handler.texts == ["Echo: stream from azure"], handler.texts
    texts = [text_of(m) for m in azure.beta.threads.messages.list(thread_id=thread.id, limit=2, order="asc")]
    assert texts[:4] == ["azure 0", "azure 1", "azure 2", "the weather in azure"] and len(texts) == 7, texts
    try:
        AzureOpenAI(azure_endpoint=ROOT_URL, api_key="wrong", api_version="2024-05-01-preview").beta.assistants.list()
        raise AssertionError("a wrong api-key was taken")
    except openai.AuthenticationError as error:
        assert error.status_code == 401 and error.code == "invalid_api_key", error.body


def main():
    failed = 0
    print(f"openai {openai.__version__} on Python {sys.version.split()[0]}", flush=True)
    for fn in checks:
        try:
            fn()
            print(f"ok {fn.__name__}", flush=True)
        except Exception:
            failed += 1
            print(f"not ok {fn.__name__}\n{traceback.format_exc()}", flush=True)
    print(f"{len(checks) - failed} of {len(checks)} checks passed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
