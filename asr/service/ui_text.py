"""The web UI's own words, in English and in Chinese: one table for app.py.

Two kinds of use, one table:
- static words (labels, buttons, placeholders) go to Gradio's client as an ``gr.I18n`` table
  (``gradio_translations``), which shows them in the page's language;
- words the server writes into the page (the cards, the History, the System facts, messages)
  are rendered here with ``ui_text(key, language, **params)``, in the language of the request.

A key missing from either language is a bug that tests/test_ui_text.py finds; Gradio's own
strings are Gradio's, less the ones its Chinese table lacks (``GRADIO_GAPS``).
"""

from __future__ import annotations

from asr.service.language import Language

#: key -> (English, Chinese); ``{name}`` parameters are filled in by ui_text
UI_TEXT: dict[str, tuple[str, str]] = {
    # ---- page ----
    "app.title": ("Offline speech recognition · Paraformer-large (中文)", "离线语音识别 · Paraformer-large（中文）"),
    "app.random_weights": ("⚠️ **Test models with RANDOM WEIGHTS are loaded: transcripts are meaningless.**",
                           "⚠️ **已加载随机权重（RANDOM WEIGHTS）的测试模型：转写结果没有意义。**"),
    "app.loading": ("⏳ The service is loading its models; transcription starts when they are ready.",
                    "⏳ 服务正在加载模型，加载完成后即可开始转写。"),
    "app.signed_in": ("Signed in as <b>{user}</b>", "已登录：<b>{user}</b>"),
    "app.log_out": ("Log out", "退出登录"),
    "app.switch": ("中文", "English"),  # the link to the other language, written in that language
    "tab.transcribe": ("Transcribe", "转写"),
    "tab.vad": ("VAD", "语音检测"),
    "tab.history": ("History", "历史记录"),
    "tab.system": ("System", "系统"),
    # ---- Transcribe tab ----
    "transcribe.files": ("Audio or video files", "音频或视频文件"),
    "transcribe.record": ("…or record", "或者录音"),
    "transcribe.punctuation": ("Punctuation", "标点"),
    "transcribe.itn": ("Numbers as digits (ITN)", "数字写成阿拉伯数字（ITN）"),
    "transcribe.itn_info": ("一百二十三 → 123, 百分之五 → 5%", "一百二十三 → 123，百分之五 → 5%"),
    "transcribe.speakers": ("Speaker labels", "区分说话人"),
    "transcribe.speakers_off": ("needs models.profile: vad+asr+punc+spk", "需要 models.profile: vad+asr+punc+spk"),
    "transcribe.num_speakers": ("Speakers (0 = find out)", "说话人数（0 = 自动判断）"),
    "transcribe.hotwords": ("Hotwords", "热词"),
    "transcribe.hotwords_hint": ("names and jargon, separated by spaces or new lines", "人名和术语，用空格或换行分隔"),
    "transcribe.hotwords_off": ("needs models.asr_model: seaco", "需要 models.asr_model: seaco"),
    "transcribe.formats": ("Files to download", "下载的文件"),
    "transcribe.run": ("Transcribe", "转写"),
    "transcribe.downloads": ("Downloads", "下载"),
    "transcribe.export": ("Export the edited version", "导出修改后的版本"),
    "transcribe.text": ("Text", "文本"),
    "transcribe.sentences": ("Sentences with timestamps", "带时间戳的句子"),
    # ---- Live tab ----
    "tab.live": ("Live", "实时字幕"),
    "live.start": ("Start", "开始"),
    "live.stop": ("Stop", "停止"),
    "live.hint": ("Speak: the grey text is what is heard so far; each sentence is then written out again, "
                  "with punctuation.", "请说话：灰色文字是正在识别的内容；每句话说完后，会加上标点重新写出。"),
    "live.listening": ("Listening…", "正在听……"),
    "live.finishing": ("Finishing the last sentence…", "正在完成最后一句……"),
    "live.done": ("Done.", "完成。"),
    "live.nomic": ("No microphone: allow this page to use it (open it as http://127.0.0.1 through the SSH tunnel, "
                   "or over https).", "没有麦克风：请允许此页面使用麦克风（通过 SSH 隧道以 http://127.0.0.1 打开，或使用 https）。"),
    # ---- VAD tab ----
    "vad.file": ("Audio or video file", "音频或视频文件"),
    "vad.run": ("Find speech", "检测语音"),
    "vad.segments": ("Speech segments", "语音片段"),
    "vad.csv": ("CSV", "CSV"),
    "vad.summary": ("**{count} speech segments** in {duration:.1f} s of audio (VAD took {seconds:.2f} s)",
                    "{duration:.1f} 秒音频中有 **{count} 个语音片段**（检测用时 {seconds:.2f} 秒）"),
    "vad.col.number": ("#", "#"),
    "vad.col.start": ("start", "开始"),
    "vad.col.end": ("end", "结束"),
    "vad.col.duration": ("duration (s)", "时长（秒）"),
    # ---- History tab ----
    "history.search": ("Search", "搜索"),
    "history.search_hint": ("file name or words of the text", "文件名或文本中的词"),
    "history.refresh": ("Refresh", "刷新"),
    "history.table": ("Past jobs (newest first) · click one to open it", "以往的任务（最新的在前）· 点击打开"),
    "history.files": ("Files", "文件"),
    "history.export": ("Export the edited version", "导出修改后的版本"),
    "history.delete": ("Delete this job", "删除此任务"),
    "history.text": ("Text", "文本"),
    "history.col.time": ("time", "时间"),
    "history.col.file": ("file", "文件"),
    "history.col.type": ("type", "类型"),
    "history.col.duration": ("duration (s)", "时长（秒）"),
    "history.col.state": ("state", "状态"),
    "history.col.rtf": ("RTF", "RTF"),
    "history.col.id": ("id", "编号"),
    # ---- job states, as a card or the History names them ----
    "state.queued": ("queued", "排队中"),
    "state.running": ("running", "进行中"),
    "state.completed": ("completed", "已完成"),
    "state.failed": ("failed", "失败"),
    "state.cancelled": ("cancelled", "已取消"),
    "state.interrupted": ("interrupted", "已中断"),
    # ---- the workspace's cards ----
    "card.refused": ("not transcribed", "未转写"),
    "card.not_queued": ("not queued: {reason}", "未加入队列：{reason}"),
    "card.cancel": ("Cancel", "取消"),
    "card.cancel_all": ("Cancel all", "全部取消"),
    "card.done_transcript": ("done · {duration:.1f} s of audio", "完成 · {duration:.1f} 秒音频"),
    "card.done_vad": ("done · {count} speech segments in {duration:.1f} s",
                      "完成 · {duration:.1f} 秒中有 {count} 个语音片段"),
    "card.waiting": ("waiting in queue (position {position})", "排队等待（第 {position} 位）"),
    "card.eta": ("about {seconds} s left", "约剩 {seconds} 秒"),
    "card.no_speech": ("(no speech found)", "（没有检测到语音）"),
    "card.edit": ("edit", "修改"),
    "card.edit_sentence": ("edit sentence {number}", "修改第 {number} 句"),
    "card.rename": ("rename", "改名"),
    "card.rename_speaker": ("rename {name}", "给{name}改名"),
    "card.speaker": ("speaker", "说话人"),
    "card.segment": ("speech {number}: {start} → {end}", "语音 {number}：{start} → {end}"),
    "card.segment_seconds": ("{seconds:.1f} s", "{seconds:.1f} 秒"),
    "card.timeline": ("speech segments over the waveform", "波形上的语音片段"),
    # ---- timings under a result ----
    "timings.head": ("**{file}** — audio {audio:.1f} s, wall {wall:.2f} s, **RTF {rtf:.4f}**",
                     "**{file}** — 音频 {audio:.1f} 秒，用时 {wall:.2f} 秒，**RTF {rtf:.4f}**"),
    "timings.decode": ("decode {seconds:.2f} s", "解码 {seconds:.2f} 秒"),
    "timings.vad": ("VAD {seconds:.2f} s", "语音检测 {seconds:.2f} 秒"),
    "timings.asr": ("ASR {seconds:.2f} s", "识别 {seconds:.2f} 秒"),
    "timings.punc": ("punctuation {seconds:.2f} s", "标点 {seconds:.2f} 秒"),
    "timings.spk": ("speakers {seconds:.2f} s", "说话人 {seconds:.2f} 秒"),
    "timings.itn": ("ITN {seconds:.2f} s", "数字规整 {seconds:.2f} 秒"),
    # ---- System tab ----
    "system.ready": ("ready", "就绪"),
    "system.yes": ("yes", "是"),
    "system.no": ("no", "否"),
    "system.version": ("version", "版本"),
    "system.up": ("up", "已运行"),
    "system.device": ("device", "设备"),
    "system.precision": ("precision", "精度"),
    "system.loading": ("loading…", "加载中……"),
    "system.logins": ("logins", "登录"),
    "system.logins_on": ("on", "开启"),
    "system.logins_off": ("off (anyone who reaches the port can use it)", "关闭（能访问此端口的人都能使用）"),
    "system.jobs": ("jobs", "任务"),
    "system.jobs_done": ("{done} done, {failed} failed (in the history)", "完成 {done} 个，失败 {failed} 个（历史记录中）"),
    "system.queue": ("queue", "队列"),
    "system.queue_waiting": ("{waiting} waiting (max {max})", "{waiting} 个等待（最多 {max} 个）"),
    "system.workers": ("workers", "工作线程"),
    "system.worker_job": ("job {job}", "任务 {job}"),
    "system.worker.idle": ("idle", "空闲"),
    "system.worker.busy": ("busy", "忙碌"),
    "system.worker.starting": ("starting", "启动中"),
    "system.worker.stopped": ("stopped", "已停止"),
    "system.cpu": ("CPU", "CPU"),
    "system.cpu_facts": ("{cores} cores, load {load}, this service {percent:.0f} %",
                         "{cores} 核，负载 {load}，本服务占 {percent:.0f}%"),
    "system.memory": ("memory", "内存"),
    "system.memory_facts": ("{free} free of {total}, this service {rss}", "共 {total}，空闲 {free}，本服务占 {rss}"),
    "system.gpu": ("GPU memory", "显存"),
    "system.gpu_facts": ("{used} used of {total}", "共 {total}，已用 {used}"),
    "system.disk": ("disk ({name})", "磁盘（{name}）"),
    "system.disk_facts": ("{free} free of {total}", "共 {total}，空闲 {free}"),
    "system.model_load": ("model load", "模型加载"),
    "system.model_load_facts": ("{load} s, warm-up {warmup} s", "{load} 秒，预热 {warmup} 秒"),
    "system.params": ("{millions} M params", "{millions} M 参数"),
    "system.random": ("RANDOM WEIGHTS (test model)", "随机权重（RANDOM WEIGHTS，测试模型）"),
    "system.duration": ("{days}{hours}{minutes} min {seconds} s", "{days}{hours}{minutes} 分 {seconds} 秒"),
    "system.days": ("{n} d ", "{n} 天 "),
    "system.hours": ("{n} h ", "{n} 小时 "),
    # ---- messages ----
    "error.internal": ("Internal error while handling this request; the details are in the service log.",
                       "处理此请求时发生内部错误，详情见服务日志。"),
    "error.nothing_given": ("Upload a file or record from the microphone first.", "请先上传文件或用麦克风录音。"),
    "error.transcribe_first": ("Transcribe something first.", "请先转写。"),
    "error.upload_first": ("Upload a file first.", "请先上传文件。"),
    "error.open_first": ("Click a job in the list to open it.", "请先在列表中点击一个任务打开它。"),
    "error.no_such_job": ("No such job.", "没有这个任务。"),
    "error.not_understood": ("This request from the page is not understood; reload the page.",
                             "无法理解页面发来的请求，请刷新页面。"),
    "error.edit_not_understood": ("This edit is not understood.", "无法理解这次修改。"),
    "error.no_such_speaker": ("There is no such speaker in this transcript.", "这份转写中没有这个说话人。"),
    "error.file_type": ("Invalid file type. Please upload a file that is one of these formats: {types}",
                        "文件类型无效。请上传以下格式之一的文件：{types}"),
    "error.job_ended": ("{file}: {state}", "{file}：{state}"),
}

#: Gradio's own keys that its Chinese table lacks (Gradio 6.31 showed the key itself as the tooltip)
GRADIO_GAPS: dict[str, tuple[str, str]] = {
    "common.upload": ("Upload", "上传"),
}

#: the BCP 47 tag each language has in Gradio's client (its Chinese table is zh-CN)
GRADIO_LOCALE: dict[Language, str] = {"en": "en", "zh": "zh-CN"}


def ui_text(key: str, language: Language = "en", **params: object) -> str:
    """The words for ``key`` in ``language``, with ``params`` filled in; KeyError for an unknown key."""
    english, chinese = UI_TEXT[key]
    template = chinese if language == "zh" else english
    return template.format(**params) if params else template


def gradio_translations() -> dict[str, dict[str, str]]:
    """The static words for gr.I18n, per Gradio locale: ours (keys as in UI_TEXT) and Gradio's gaps."""
    table: dict[str, dict[str, str]] = {}
    for language, locale in GRADIO_LOCALE.items():
        side = 1 if language == "zh" else 0
        table[locale] = {key: pair[side] for key, pair in {**UI_TEXT, **GRADIO_GAPS}.items()}
    return table
