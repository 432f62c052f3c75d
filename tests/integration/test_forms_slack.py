"""Human-input forms on Slack, end to end: a chatflow pauses on a form, the answer shows it
with numbered actions (and buttons), the user's next message or a click answers it (Dify
gets the action and the text as the run's user; a form with a field asks for it in a
modal first) and the resumed run streams into a new answer, on another instance too. And
the answers that must not work: a second one (412), one after the form expired (412), one
by someone else in a per-user scope, a form the API cannot answer."""

from __future__ import annotations

from typing import Any

from gateway.emulator import DifyEmulator, Form, ScriptedReply
from gateway.words import ENGLISH
from tests import redis_servers
from tests.conftest import GatewayFactory, make_config
from tests.fakes.slack import FakeSlack, Message
from tests.helpers import wait_for
from tests.integration.slack_gateway import answered_in_dm, clicked, say, start
from tests.integration.slack_helpers import mention, new_ts, slack_bot


def review(**form: Any) -> ScriptedReply:
    then = ScriptedReply(chunks=["Plan ", "approved."])
    return ScriptedReply(chunks=["I drafted a plan."], form=Form(then=then, **form))


async def test_a_form_is_shown_as_text_and_a_numbered_reply_resumes_the_run(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(review(fields=["comment"]))
    shown = await say(client, gateway, slack, "plan my trip")
    assert shown.startswith("I drafted a plan.")
    assert "Please review the plan." in shown and "{{#" not in shown
    assert "1. Approve\n2. Reject" in shown
    assert ENGLISH.form_reply_with_text("comment") in shown
    (token,) = dify.forms.runs

    resumed = await say(client, gateway, slack, "1 looks good")
    (answer,) = dify.forms.answers
    assert answer["token"] == token and answer["action"] == "approve"
    assert answer["inputs"] == {"comment": "looks good"}
    assert answer["user"] == "slack-main:U222"
    run_id = dify.forms.runs[token].run_id
    assert dify.forms.resumes == [{"run_id": run_id, "user": answer["user"]}]
    assert resumed.startswith("Plan approved.")
    # The form is answered: the next message is a question again.
    dify.reply(ScriptedReply(chunks=["A new answer."]))
    assert (await say(client, gateway, slack, "2")).startswith("A new answer.")
    assert len(dify.forms.answers) == 1


async def test_a_form_answered_twice_or_expired_says_so_plainly(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(review())
    await say(client, gateway, slack, "plan my trip")
    (token,) = dify.forms.runs
    # Answered elsewhere already (Dify's web app, another chat): Dify says 412.
    dify.forms.runs[token].answer = {"action": "reject"}
    assert await say(client, gateway, slack, "1") == ENGLISH.form_closed
    assert [a["status"] for a in dify.forms.answers] == [412]
    assert dify.forms.resumes == []

    dify.reply(review())
    await say(client, gateway, slack, "plan it again")
    token = list(dify.forms.runs)[-1]
    dify.forms.expire(token)
    assert await say(client, gateway, slack, "2") == ENGLISH.form_closed
    assert dify.forms.resumes == []
    # Dify refused it: the conversation's next message is a question again.
    dify.reply(ScriptedReply(chunks=["Asked anew."]))
    assert (await say(client, gateway, slack, "1")).startswith("Asked anew.")


async def test_a_reply_that_is_no_answer_shows_the_form_again(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(review())
    await say(client, gateway, slack, "plan my trip")
    again = await say(client, gateway, slack, "what about 7?")
    assert "1. Approve\n2. Reject" in again and ENGLISH.form_reply in again
    assert dify.forms.answers == []
    # /reset leaves the form: the next message is a question.
    await say(client, gateway, slack, "/reset")
    dify.reply(ScriptedReply(chunks=["Fresh."]))
    assert (await say(client, gateway, slack, "1")).startswith("Fresh.")
    assert dify.forms.answers == []


async def test_anyone_in_a_shared_scope_answers_a_form_as_the_run_s_user(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    routes = [{"match": {"chat_type": "direct"}, "app": "main", "scope": "chat"}]
    client, gateway = await start(gateway_factory, dify, slack, routes=routes)
    dify.reply(review())
    await say(client, gateway, slack, "plan my trip", user="U222", channel="D111")
    # Another person in the same chat (a shared scope) may answer.
    resumed = await say(client, gateway, slack, "1", user="U333", channel="D111")
    assert resumed.startswith("Plan approved.")
    (answer,) = dify.forms.answers
    assert answer["user"] == dify.requests[0]["user"]  # the run's user, whoever answered


async def test_in_a_per_user_scope_another_user_s_message_is_no_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    routes = [{"match": {"chat_type": "group"}, "app": "main", "scope": "user"}]
    client, gateway = await start(gateway_factory, dify, slack, routes=routes)
    dify.reply(review())
    ts = new_ts()
    await say(client, gateway, slack, "plan", event=mention("plan", ts=ts, user="U222"))
    dify.reply(ScriptedReply(chunks=["Your own question."]))
    other = await say(client, gateway, slack, "1", event=mention("1", user="U333"))
    assert other.startswith("Your own question.")
    assert dify.forms.answers == []


async def test_a_form_the_api_cannot_answer_gets_one_line(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(review(delivery="email"))
    shown = await say(client, gateway, slack, "plan my trip")
    assert shown == f"I drafted a plan.\n\n{ENGLISH.form_elsewhere}"
    dify.reply(ScriptedReply(chunks=["A question."]))
    assert (await say(client, gateway, slack, "1")).startswith("A question.")
    assert dify.forms.answers == []


async def test_a_form_only_named_by_the_pause_is_read_from_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(review(named_only=True))
    shown = await say(client, gateway, slack, "plan my trip")
    assert "Please review the plan." in shown and "2. Reject" in shown
    assert (await say(client, gateway, slack, "2")).startswith("Plan approved.")
    assert dify.forms.answers[0]["action"] == "reject"


# --- buttons and the modal -----------------------------------------------------------------


def form_buttons(message: Message) -> list[tuple[str, str]]:
    return [
        (e["action_id"], e["text"]["text"])
        for b in message.blocks or []
        for e in b.get("elements", [])
    ]


async def test_a_form_s_actions_are_buttons_and_a_click_answers_it(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(review())
    _, message = await answered_in_dm(client, gateway, slack, "plan my trip")
    # The form's actions, and nothing to rate: the answer is not done.
    assert form_buttons(message) == [("dgw_form_0", "Approve"), ("dgw_form_1", "Reject")]
    await clicked(client, gateway, slack.click(message, "dgw_form_1"))
    (answer,) = dify.forms.answers
    assert (answer["action"], answer["user"]) == ("reject", "slack-main:U222")
    assert any(m.text.startswith("Plan approved.") for m in slack.messages.values())
    # A second click: Dify took the form once (412), said plainly.
    await clicked(client, gateway, slack.click(message, "dgw_form_0"))
    assert [a["status"] for a in dify.forms.answers] == [200, 412]
    assert len(dify.forms.resumes) == 1
    assert any(m.text == ENGLISH.form_closed for m in slack.messages.values())


async def test_a_click_on_a_form_with_a_field_opens_a_modal_whose_text_answers_it(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(review(fields=["comment"]))
    _, message = await answered_in_dm(client, gateway, slack, "plan my trip")
    await clicked(client, gateway, slack.click(message, "dgw_form_0"))
    (view,) = slack.views
    assert view["submit"]["text"] == "Approve" and dify.forms.answers == []
    await clicked(client, gateway, slack.submit(view, "Looks good"))
    (answer,) = dify.forms.answers
    assert (answer["action"], answer["inputs"]) == ("approve", {"comment": "Looks good"})
    assert any(m.text.startswith("Plan approved.") for m in slack.messages.values())


async def test_a_click_by_another_user_in_a_per_user_scope_does_not_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(review())
    _, message = await answered_in_dm(client, gateway, slack, "plan my trip")
    await clicked(client, gateway, slack.click(message, "dgw_form_0", user="U999"))
    assert dify.forms.answers == [] and slack.views == []
    assert any(m.text == ENGLISH.form_not_yours for m in slack.messages.values())
    # The asker still can.
    await clicked(client, gateway, slack.click(message, "dgw_form_0"))
    assert [a["action"] for a in dify.forms.answers] == ["approve"]


async def test_a_form_kept_by_one_instance_is_answered_through_another(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack, redis_url: str
) -> None:
    await redis_servers.flush(redis_url)
    config = make_config(dify, {"slack-main": slack_bot(slack)}, store=redis_url)
    (a, gw_a), (b, gw_b) = await gateway_factory(config), await gateway_factory(config)
    for gateway in (gw_a, gw_b):
        await wait_for(lambda g=gateway: g.adapters["slack-main"].ready, what="bot ready")
    dify.reply(review(fields=["comment"]))
    assert "1. Approve" in await say(a, gw_a, slack, "plan my trip")
    # The reply lands on B, which knows the form from the store alone.
    resumed = await say(b, gw_b, slack, "1 fine by me")
    assert resumed.startswith("Plan approved.")
    (answer,) = dify.forms.answers
    assert (answer["action"], answer["inputs"]) == ("approve", {"comment": "fine by me"})
