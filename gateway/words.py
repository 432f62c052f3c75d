"""Every text a chat user reads, in one record per language.

A bot answers in its `locale` (config `bots.<name>.locale`, by default the one its platform's
users read: `gateway.registry`). The core hands its adapters the bot's `Words` through
`AdapterContext.words`; nothing user-facing is written anywhere else. Logs stay English.

Texts are standard Markdown, like an answer: a sink that shows one as a placeholder styles
it itself (Slack shows `_Thinking…_`). A text with a parameter is a `*_template` field with
named fields, filled only by the method of the same name, so a call site cannot leave one
empty. Chinese texts use full-width punctuation, as a Chinese product writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.dify_events import (
    DeadlineExceeded,
    DifyError,
    DifyHTTPError,
    DifyRateLimited,
    DifyStreamError,
    StreamStalled,
)
from gateway.registry import Locale


@dataclass(frozen=True, slots=True)
class Words:
    locale: Locale

    # --- commands ------------------------------------------------------------------------
    new_conversation: str  # the answer to /reset
    help: str  # the answer to /help
    stopping: str  # the answer to /stop, when an answer was being written
    nothing_to_stop: str  # the answer to /stop, when none was

    # --- clicks on what the gateway posted (gateway/clicks.py) ---------------------------
    expired: str  # a click on an answer the gateway no longer knows
    not_yours_to_stop: str  # a Stop by someone who may not stop that answer
    stop_button: str  # the label of the Stop button under an answer being written
    stopped: str  # under an answer someone stopped
    # The question after a 👎 (a Slack modal: title and buttons at most 24 characters)
    reason_title: str
    reason_label: str
    reason_send: str
    reason_skip: str

    # --- answers -------------------------------------------------------------------------
    thinking: str  # the placeholder until the first words of the answer arrive
    empty_answer: str
    sources: str  # the heading above a knowledge-base answer's citations
    image: str  # the name of an image the app produced without one ("image.png")
    file: str  # the name of a file the app produced without one
    # The question Dify gets when a message has files but no text: the app answers it.
    files_without_text_template: str  # {names}
    empty_message: str  # the same, when the message had nothing readable at all
    # The status line while the app works (`ReplySink.update`); never in a final message.
    status_tools_template: str  # {tools}: the tools an agent is calling, by name
    status_knowledge: str  # a knowledge-base search
    status_reasoning: str  # the model reasons before it answers
    status_step_template: str  # {step}: the title of the chatflow/workflow node running
    tools_used_template: str  # {tools}: the footer of an agent's answer (`show_tools`)
    usage_template: str  # {tokens}, {seconds}: the footer of an answer (`show_usage`)
    usage_tokens_template: str  # {tokens}: the same, when Dify gave no latency
    reasoning_title: str  # above the model's reasoning, where it is shown folded
    file_missing_template: str  # {name}: a file of the app's the chat could not take
    files_answer_template: str  # {names}: the text of an answer that is only files
    run_stopped: str  # under an answer whose run was stopped before it finished
    # An attachment the app does not take ({name}; {limit}: MB or a count)
    attachment_refused_template: str  # {name}
    attachment_too_large_template: str  # {name}, {limit}
    attachment_too_many_template: str  # {name}, {limit}

    # --- failures ------------------------------------------------------------------------
    something_went_wrong: str
    gave_up: str  # a message that failed every attempt (gateway/inbox)
    unreadable_file: str
    too_slow: str
    dify_unavailable: str
    dify_misconfigured: str
    dify_busy: str
    dify_stalled: str
    dify_rejected_template: str  # {code}: Dify's error code for a 400
    dify_error_template: str  # {code}: the code of a stream `error` event
    quota_exhausted: str  # Dify Cloud's or the model provider's quota is used up
    app_unavailable: str  # the app is not published, not set up, or the wrong kind
    model_unavailable: str  # the app's model is not set up or not supported
    model_failed: str  # the model provider failed to answer
    invalid_inputs: str  # Dify refused the inputs (the log names which)
    file_rejected: str  # Dify refused a file the user sent
    conversation_completed: str  # Dify ended the conversation; the next message starts anew
    run_failed: str  # a workflow or chatflow run failed
    run_paused: str  # the run waits for a human input form the chat cannot show

    # --- human-input forms (gateway/forms.py) -----------------------------------------------
    form_reply: str  # under a form's numbered actions: how to answer it
    form_reply_with_text_template: str  # {label}: the same, when a reply can fill a field
    form_elsewhere: str  # a form answered by email or in Dify's console, not in the chat
    form_closed: str  # a form already answered, or expired
    form_not_yours: str  # an answer by someone who may not answer that form
    form_title: str  # the title of a dialog that asks for a form's field, if the form has none
    form_cancel: str  # its button that closes it unanswered
    form_chosen_template: str  # {action}: on a card whose form a click on that action answered

    # --- messages the bot cannot read ----------------------------------------------------
    kind_not_supported_template: str  # {kind}: see `kind_not_supported`
    kinds: Mapping[str, str]  # message kinds by their names in `KINDS`
    these_kinds: str  # the kind of a message whose type is not known at all
    voice_not_supported: str
    voice_not_understood: str
    video_not_supported: str
    only_text_images_voice_files: str
    only_text_images_voice: str
    mention_without_question: str  # a group message that is only the @mention

    # --- the WeCom AI bot ----------------------------------------------------------------
    welcome: str  # when the app has no opening statement
    cannot_answer_now: str
    too_many_questions_template: str  # {limit}: answers one user may have in flight
    interrupted: str  # the note under an answer whose worker vanished
    continued: str  # the note under a stream that continues in the next message
    taking_long: str  # the note under a stream that closes before the answer is done
    cut: str  # the note under an answer longer than one message may be
    # A template card of buttons after the answer (adapters/wecom_bot/cards.py): its title
    # (WeCom suggests at most 26 characters), and its line once a button was clicked.
    suggestions_title: str  # above the suggested questions
    form_choice_title: str  # above a paused form's actions
    card_chosen_template: str  # {choice}: the suggestion clicked (a form: `form_chosen`)

    # --- limits and access (gateway/limits.py) ----------------------------------------------
    user_rate_limited: str  # a user asked more than their route allows in a minute
    bot_rate_limited: str  # the bot as a whole took more questions than it allows in a minute
    access_refused: str  # a route's allow/deny lists leave this user or chat out

    # --- DingTalk ------------------------------------------------------------------------
    reply_title: str  # the notification title of an answer with no plain text to preview

    # --- the web chat --------------------------------------------------------------------
    too_many_messages_template: str  # {limit}: messages one connection may send a minute
    unreadable_message: str  # a message frame the gateway cannot take (no text, a bad file)

    def form_reply_with_text(self, label: str) -> str:
        return self.form_reply_with_text_template.format(label=label)

    def form_chosen(self, action: str) -> str:
        return self.form_chosen_template.format(action=action)

    def card_chosen(self, choice: str) -> str:
        return self.card_chosen_template.format(choice=choice)

    def files_without_text(self, names: str) -> str:
        return self.files_without_text_template.format(names=names)

    def dify_rejected(self, code: str) -> str:
        return self.dify_rejected_template.format(code=code)

    def dify_error(self, code: str) -> str:
        return self.dify_error_template.format(code=code)

    def status_tools(self, tools: str) -> str:
        return self.status_tools_template.format(tools=tools)

    def status_step(self, step: str) -> str:
        return self.status_step_template.format(step=step)

    def tools_used(self, tools: str) -> str:
        return self.tools_used_template.format(tools=tools)

    def usage(self, tokens: int, seconds: float | None) -> str:
        if seconds is None:
            return self.usage_tokens_template.format(tokens=f"{tokens:,}")
        return self.usage_template.format(tokens=f"{tokens:,}", seconds=f"{seconds:.1f}")

    def file_missing(self, name: str) -> str:
        return self.file_missing_template.format(name=name)

    def files_answer(self, names: str) -> str:
        return self.files_answer_template.format(names=names)

    def attachment_refused(self, name: str) -> str:
        return self.attachment_refused_template.format(name=name)

    def attachment_too_large(self, name: str, limit: int) -> str:
        return self.attachment_too_large_template.format(name=name, limit=limit)

    def attachment_too_many(self, name: str, limit: int) -> str:
        return self.attachment_too_many_template.format(name=name, limit=limit)

    def kind_not_supported(self, kind: str) -> str:
        """`kind` is a name from `KINDS`, said in words; any other is the platform's own
        name of the message type, shown as it is; an empty one reads as "these"."""
        named = self.kinds.get(kind, kind or self.these_kinds)
        return self.kind_not_supported_template.format(kind=named)

    def too_many_questions(self, limit: int) -> str:
        return self.too_many_questions_template.format(limit=limit)

    def too_many_messages(self, limit: int) -> str:
        return self.too_many_messages_template.format(limit=limit)


# The message kinds an adapter may name in `kind_not_supported` (each platform maps its own
# message types onto these).
KINDS = (
    "image",
    "file",
    "voice",
    "rich_text",
    "video",
    "sticker",
    "card",
    "shared_chat",
    "contact",
    "chat_history",
    "location",
    "task",
    "system",
    "link",
)

ENGLISH = Words(
    locale="en",
    new_conversation="Started a new conversation. What would you like to ask?",
    help=(
        "I pass your messages to an AI assistant and stream its answer here.\n\n"
        "Commands (send them as the whole message):\n"
        "- `/reset`: start a new conversation (the assistant forgets this one)\n"
        "- `/stop`: stop the answer being written\n"
        "- `/help`: show this help"
    ),
    stopping="Stopping the answer.",
    nothing_to_stop="No answer is being written here.",
    expired="Sorry, this has expired: ask again to get a new answer.",
    not_yours_to_stop="Only the person who asked can stop this answer.",
    stop_button="Stop",
    stopped="_(stopped)_",
    reason_title="What went wrong?",
    reason_label="Tell us what was wrong with the answer (optional).",
    reason_send="Send",
    reason_skip="Skip",
    thinking="Thinking…",
    empty_answer="_(The assistant returned an empty answer.)_",
    sources="Sources",
    image="image",
    file="file",
    files_without_text_template="(The user sent {names} without text.)",
    empty_message="(The user sent a message without text.)",
    status_tools_template="Using {tools}…",
    status_knowledge="Searching the knowledge base…",
    status_reasoning="Reasoning…",
    status_step_template="Working on: {step}…",
    tools_used_template="Used: {tools}",
    usage_template="{tokens} tokens · {seconds} s",
    usage_tokens_template="{tokens} tokens",
    reasoning_title="Reasoning",
    file_missing_template="{name} (could not be attached here)",
    files_answer_template="Files: {names}",
    run_stopped="_(The assistant was stopped before it finished.)_",
    attachment_refused_template=(
        "({name} was not passed on: this assistant does not take this kind of file.)"
    ),
    attachment_too_large_template=(
        "({name} was not passed on: it is larger than the {limit} MB this assistant takes.)"
    ),
    attachment_too_many_template=(
        "({name} was not passed on: this assistant takes at most {limit} files at a time.)"
    ),
    something_went_wrong="Sorry, something went wrong while answering. Please try again.",
    gave_up="Sorry, I could not answer this message. Please send it again.",
    unreadable_file="Sorry, I could not read the file you sent. Please try again.",
    too_slow="Sorry, the answer took too long and was stopped.",
    dify_unavailable="Sorry, the assistant is unavailable right now. Please try again shortly.",
    dify_misconfigured="Sorry, this assistant is misconfigured (Dify refused the API key).",
    dify_busy="Sorry, the assistant is busy right now. Please try again in a minute.",
    dify_stalled="Sorry, the assistant stopped responding. Please try again.",
    dify_rejected_template="Sorry, Dify could not process that message ({code}).",
    dify_error_template="Sorry, the assistant ran into an error ({code}).",
    quota_exhausted=(
        "Sorry, the assistant has used up its quota. Please tell the person who runs it."
    ),
    app_unavailable=(
        "Sorry, this assistant is not available: its Dify app is not published or not set "
        "up. Please tell the person who runs it."
    ),
    model_unavailable=(
        "Sorry, the assistant's AI model cannot be used right now. Please tell the person "
        "who runs it."
    ),
    model_failed="Sorry, the AI model failed to answer. Please try again.",
    invalid_inputs=(
        "Sorry, this chat does not give the assistant everything it needs. Please tell the "
        "person who runs it."
    ),
    file_rejected="Sorry, the assistant could not take the file you sent.",
    conversation_completed="This conversation has ended. Your next message starts a new one.",
    run_failed="Sorry, the assistant's workflow failed. Please try again.",
    run_paused="Sorry, the assistant needs a form filled in, which this chat cannot show.",
    form_reply="Reply with the number of your choice.",
    form_reply_with_text_template=(
        "Reply with the number of your choice, then your {label} if you like "
        "(for example `1 looks good`)."
    ),
    form_elsewhere=(
        "The assistant is waiting for a form that is answered by email or in Dify, not here."
    ),
    form_closed="This form was already answered, or it has expired.",
    form_not_yours="Only the person who asked can answer this form.",
    form_title="Answer the form",
    form_cancel="Cancel",
    form_chosen_template="✅ Answered: {action}",
    kind_not_supported_template=(
        "Sorry, I can't read {kind} messages yet. "
        "Please send your question as text, an image or a file."
    ),
    kinds={
        "image": "image",
        "file": "file",
        "voice": "voice",
        "rich_text": "rich text",
        "video": "video",
        "sticker": "sticker",
        "card": "card",
        "shared_chat": "shared group",
        "contact": "contact card",
        "chat_history": "forwarded chat history",
        "location": "location",
        "task": "task",
        "system": "system",
        "link": "link",
    },
    these_kinds="these",
    voice_not_supported=(
        "Sorry, voice messages are not supported yet. Please type your question instead."
    ),
    voice_not_understood="Sorry, I could not make out that voice message.",
    video_not_supported="Sorry, I can't watch videos yet. Please describe what you need in text.",
    only_text_images_voice_files=(
        "Sorry, I can only read text, pictures, voice messages and files for now. "
        "Please send your question as text."
    ),
    only_text_images_voice="Sorry, I can only read text, pictures and voice messages here.",
    mention_without_question="Please write your question after mentioning me.",
    welcome="Hello! I'm an AI assistant. Ask me anything.",
    cannot_answer_now="Sorry, I can't answer right now. Please try again in a moment.",
    too_many_questions_template=(
        "You already have {limit} questions in progress with me. Please wait for one of the "
        "answers to finish, then ask again."
    ),
    interrupted="*(The answer was interrupted. Please ask again.)*",
    continued="*(continued in the next message)*",
    taking_long="*(This is taking a while: the rest of the answer follows in a new message.)*",
    cut="*(The answer was cut here: it is longer than WeCom allows for one answer.)*",
    suggestions_title="You could also ask",
    form_choice_title="Your choice",
    card_chosen_template="Chosen: {choice}",
    user_rate_limited=(
        "You are asking faster than I can keep up with. Please wait a minute, then ask again."
    ),
    bot_rate_limited=(
        "Many people are asking me questions right now. Please try again in a minute."
    ),
    access_refused=(
        "Sorry, I am not available to you here yet. Your administrator can give you access."
    ),
    reply_title="Reply",
    too_many_messages_template=(
        "You are sending messages faster than {limit} a minute. Please wait a moment, "
        "then send this one again."
    ),
    unreadable_message="Sorry, I could not read that message. Please send it again as text.",
)

SIMPLIFIED_CHINESE = Words(
    locale="zh-CN",
    new_conversation="已开始新的对话。请问有什么可以帮您？",
    help=(
        "我会把您的消息转给 AI 助手，并在这里实时显示它的回答。\n\n"
        "命令（需单独发送）：\n"
        "- `/reset`：开始新的对话（助手将不再记得当前对话）\n"
        "- `/stop`：停止正在生成的回答\n"
        "- `/help`：显示本帮助"
    ),
    stopping="正在停止回答。",
    nothing_to_stop="这里没有正在生成的回答。",
    expired="抱歉，此内容已过期，请重新提问以获得新的回答。",
    not_yours_to_stop="只有提问的人可以停止这个回答。",
    stop_button="停止",
    stopped="_（已停止）_",
    reason_title="哪里不好？",
    reason_label="请告诉我们这个回答哪里有问题（可选）。",
    reason_send="发送",
    reason_skip="跳过",
    thinking="思考中…",
    empty_answer="_（助手没有返回任何内容。）_",
    sources="参考资料",
    image="图片",
    file="文件",
    files_without_text_template="（用户发送了 {names}，没有附带文字。）",
    empty_message="（用户发送了一条没有文字的消息。）",
    status_tools_template="正在使用 {tools}…",
    status_knowledge="正在检索知识库…",
    status_reasoning="正在深度思考…",
    status_step_template="正在执行：{step}…",
    tools_used_template="使用了：{tools}",
    usage_template="{tokens} 个 token · 耗时 {seconds} 秒",
    usage_tokens_template="{tokens} 个 token",
    reasoning_title="思考过程",
    file_missing_template="{name}（无法在此附上）",
    files_answer_template="文件：{names}",
    run_stopped="_（助手在完成前被停止了。）_",
    attachment_refused_template="（{name} 未转交：该助手不接受这类文件。）",
    attachment_too_large_template="（{name} 未转交：文件超过了该助手接受的 {limit} MB。）",
    attachment_too_many_template="（{name} 未转交：该助手一次最多接受 {limit} 个文件。）",
    something_went_wrong="抱歉，回答时出了点问题，请稍后再试。",
    gave_up="抱歉，这条消息没能得到回答，请重新发送。",
    unreadable_file="抱歉，无法读取您发送的文件，请稍后再试。",
    too_slow="抱歉，回答用时过长，已停止。",
    dify_unavailable="抱歉，助手暂时无法使用，请稍后再试。",
    dify_misconfigured="抱歉，该助手配置有误（Dify 拒绝了 API 密钥）。",
    dify_busy="抱歉，助手正忙，请一分钟后再试。",
    dify_stalled="抱歉，助手没有响应，请重试。",
    dify_rejected_template="抱歉，Dify 无法处理这条消息（{code}）。",
    dify_error_template="抱歉，助手出错了（{code}）。",
    quota_exhausted="抱歉，助手的额度已用完，请联系管理员。",
    app_unavailable="抱歉，该助手暂不可用：它的 Dify 应用尚未发布或未配置好，请联系管理员。",
    model_unavailable="抱歉，助手的 AI 模型暂时无法使用，请联系管理员。",
    model_failed="抱歉，AI 模型没能给出回答，请重试。",
    invalid_inputs="抱歉，当前会话没有提供助手所需的全部信息，请联系管理员。",
    file_rejected="抱歉，助手无法接收您发送的文件。",
    conversation_completed="本次对话已结束，您的下一条消息将开始新的对话。",
    run_failed="抱歉，助手的工作流运行失败了，请重试。",
    run_paused="抱歉，助手需要填写表单才能继续，而当前聊天无法显示表单。",
    form_reply="请回复所选项的编号。",
    form_reply_with_text_template=(
        "请回复所选项的编号，也可以在编号后写上{label}（例如“1 没问题”）。"
    ),
    form_elsewhere="助手正在等待一份表单，请在邮件或 Dify 中填写，无法在这里回复。",
    form_closed="这份表单已经提交过，或者已经过期。",
    form_not_yours="只有提问的人可以填写这份表单。",
    form_title="填写表单",
    form_cancel="取消",
    form_chosen_template="✅ 已提交：{action}",
    kind_not_supported_template=("抱歉，暂时还无法读取{kind}消息，请用文字、图片或文件提问。"),
    kinds={
        "image": "图片",
        "file": "文件",
        "voice": "语音",
        "rich_text": "富文本",
        "video": "视频",
        "sticker": "表情",
        "card": "卡片",
        "shared_chat": "群名片",
        "contact": "个人名片",
        "chat_history": "合并转发的聊天记录",
        "location": "位置",
        "task": "任务",
        "system": "系统",
        "link": "链接",
    },
    these_kinds="这类",
    voice_not_supported="抱歉，暂不支持语音消息，请改用文字提问。",
    voice_not_understood="抱歉，没能听清这条语音消息。",
    video_not_supported="抱歉，暂时还无法观看视频，请用文字描述您的需求。",
    only_text_images_voice_files=("抱歉，目前只能读取文字、图片、语音和文件消息，请用文字提问。"),
    only_text_images_voice="抱歉，目前仅支持文字、图片和语音消息。",
    mention_without_question="请在 @我 之后写下您的问题。",
    welcome="您好！我是 AI 助手，有什么问题都可以问我。",
    cannot_answer_now="抱歉，现在无法回答，请稍后再试。",
    too_many_questions_template=("您已有 {limit} 个问题正在回答中，请等其中一个回答完成后再提问。"),
    interrupted="*（回答中断了，请重新提问。）*",
    continued="*（未完，见下一条消息）*",
    taking_long="*（回答用时较长，其余内容将在新消息中发送。）*",
    cut="*（回答超出了企业微信单条回答的长度上限，已在此截断。）*",
    suggestions_title="您还可以问",
    form_choice_title="请选择",
    card_chosen_template="已选择：{choice}",
    user_rate_limited="您提问有点快，请稍等一分钟后再问。",
    bot_rate_limited="现在向我提问的人比较多，请一分钟后再试。",
    access_refused="抱歉，您暂时无法在这里使用我。如需使用，请联系管理员开通。",
    reply_title="回复",
    too_many_messages_template=(
        "您发送消息太快了（每分钟最多 {limit} 条），请稍等片刻再重新发送这条消息。"
    ),
    unreadable_message="抱歉，无法读取这条消息，请以文字形式重新发送。",
)

CATALOGUE: dict[Locale, Words] = {"en": ENGLISH, "zh-CN": SIMPLIFIED_CHINESE}


def words_for(locale: Locale) -> Words:
    """The texts of one locale (the config accepts only locales that have them)."""
    return CATALOGUE[locale]


# Dify's error codes (HTTP bodies and stream `error` events) and what the user reads.
_FAILURE_BY_CODE = {
    "rate_limit_error": "quota_exhausted",  # Dify Cloud's quota: not retried
    "provider_quota_exceeded": "quota_exhausted",
    "too_many_requests": "dify_busy",  # the app's concurrency cap: retried first
    "app_unavailable": "app_unavailable",
    "not_chat_app": "app_unavailable",
    "not_workflow_app": "app_unavailable",
    "agent_not_published": "app_unavailable",
    "workflow_version_execution_not_allowed": "app_unavailable",
    "provider_not_initialize": "model_unavailable",
    "model_currently_not_support": "model_unavailable",
    "completion_request_error": "model_failed",
    "invalid_param": "invalid_inputs",
    "conversation_completed": "conversation_completed",
    "workflow_failed": "run_failed",
    "workflow_paused": "run_paused",
    "human_input_form_submitted": "form_closed",  # 412: a form is answered once
    "human_input_form_expired": "form_closed",
    "file_too_large": "file_rejected",
    "unsupported_file_type": "file_rejected",
    "too_many_files": "file_rejected",
    "no_file_uploaded": "file_rejected",
    "filename_not_exists_error": "file_rejected",
    "file_not_found": "file_rejected",
    "file_access_denied": "file_rejected",
    "audio_too_large": "file_rejected",
    "unsupported_audio_type": "file_rejected",
    "no_audio_uploaded": "file_rejected",
    "provider_not_support_speech_to_text": "voice_not_supported",
}


def dify_failure(words: Words, error: DifyError) -> str:
    """What the user reads when Dify fails: the one place that maps Dify's errors to texts
    (`str(error)` is the English detail for the logs)."""
    if isinstance(error, DifyHTTPError):
        entry = _FAILURE_BY_CODE.get(error.code)
        if entry is not None:
            return str(getattr(words, entry))
        if error.status in (401, 403):
            return words.dify_misconfigured
        if error.status == 400:
            return words.dify_rejected(error.code)
        return words.dify_unavailable
    if isinstance(error, DifyRateLimited):
        return words.dify_busy
    if isinstance(error, StreamStalled):
        return words.dify_stalled
    if isinstance(error, DifyStreamError):
        entry = _FAILURE_BY_CODE.get(error.code)
        return str(getattr(words, entry)) if entry else words.dify_error(error.code or "error")
    if isinstance(error, DeadlineExceeded):
        return words.too_slow
    # DifyUnavailable, ConversationGone (after the retry), and anything new.
    return words.dify_unavailable


@dataclass(frozen=True, slots=True)
class ChatPageWords:
    """The web chat page's own texts (adapters/web/page.js), in the bot's locale. What the
    assistant says (thinking…, errors) comes from the bot's `Words`."""

    title: str  # the page title, before the bot's name
    placeholder: str  # the empty message box
    send: str
    new_chat: str  # the button that sends /reset
    attach: str  # the button that picks files
    remove_file: str  # the label of the button that drops a picked file
    empty_state: str  # shown before the first message
    online: str  # connected
    connecting: str
    reconnecting: str
    waiting_to_send: str  # under a message kept until the connection is back
    session_expired: str  # the token was refused: the embedding site must mint a new one
    too_large: str  # a message or file over the size limit
    cut_off: str  # the gateway closed the socket because the page fell behind
    stop: str  # the button that stops the answer being written
    helpful: str  # the label of 👍 (for screen readers)
    not_helpful: str  # the label of 👎


CHAT_PAGES: dict[Locale, ChatPageWords] = {
    "en": ChatPageWords(
        title="Chat",
        placeholder="Ask anything…",
        send="Send",
        new_chat="New chat",
        attach="Attach files",
        remove_file="Remove",
        empty_state="Ask a question to start the conversation.",
        online="Online",
        connecting="Connecting…",
        reconnecting="Connection lost. Reconnecting…",
        waiting_to_send="Waiting for the connection…",
        session_expired="Your session has expired. Please reload the page.",
        too_large="That is too large to send here.",
        cut_off="The connection fell behind. Catching up…",
        stop="Stop",
        helpful="Helpful",
        not_helpful="Not helpful",
    ),
    "zh-CN": ChatPageWords(
        title="对话",
        placeholder="有什么问题，尽管问…",
        send="发送",
        new_chat="新对话",
        attach="添加文件",
        remove_file="移除",
        empty_state="提出一个问题，开始对话。",
        online="在线",
        connecting="正在连接…",
        reconnecting="连接已断开，正在重新连接…",
        waiting_to_send="等待连接恢复…",
        session_expired="会话已过期，请刷新页面。",
        too_large="内容太大，无法在这里发送。",
        cut_off="连接跟不上了，正在追赶…",
        stop="停止",
        helpful="有帮助",
        not_helpful="没帮助",
    ),
}


def chat_page_words(locale: Locale) -> ChatPageWords:
    return CHAT_PAGES[locale]
