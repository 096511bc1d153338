"""The user-facing error messages in Chinese, translated from the English message at display time.

``str(error)`` of an AsrError is English, and it stays so: the HTTP API and the CLI give it byte for
byte as before, and a job in the history keeps only that English text and its ``code`` (SQLite
``error`` and ``error_code``). So the UI, which answers in the browser's language, translates when it
shows a message, from that (message, code) pair alone: a catalog of English patterns, whose captured
parameters (file names, numbers, paths, codec names, durations) go into the Chinese unchanged, and,
for a message no pattern knows (a new one, or a library's text), the error code's Chinese summary
with the English original after it, so that nothing a user is told is lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from asr.service.language import Language

# ---- phrases inside messages -------------------------------------------------------------------------

#: What the audio sniffer says a wrong file looks like (asr.core.audio._sniff): "This looks like {what}".
_LOOKS_LIKE = {
    "a Flash video (FLV)": "一个 Flash 视频（FLV）",
    "an MPEG video": "一个 MPEG 视频",
    "an AVI or other RIFF file": "一个 AVI 或其他 RIFF 文件",
    "a PDF document": "一个 PDF 文档",
    "a JPEG image": "一张 JPEG 图片",
    "a PNG image": "一张 PNG 图片",
    "a GIF image": "一张 GIF 图片",
    "a WebP image": "一张 WebP 图片",
    "a HEIC/AVIF photo": "一张 HEIC/AVIF 照片",
    "a ZIP archive (or a Word/Excel document)": "一个 ZIP 压缩包（或 Word/Excel 文档）",
    "a Microsoft Office document": "一个 Microsoft Office 文档",
    "a RAR archive": "一个 RAR 压缩包",
    "a 7-Zip archive": "一个 7-Zip 压缩包",
    "a gzip archive": "一个 gzip 压缩包",
    "a program": "一个程序",
    "a web page (HTML)": "一个网页（HTML）",
    "a text file": "一个文本文件",
}

#: The audio formats the sniffer names ("it starts like WAV"): format names, except this one.
_AUDIO_KINDS = {"MPEG audio": "MPEG 音频"}

#: Job states as a message names them (asr.service.jobs.JobState values).
_STATES = {
    "queued": "排队中",
    "running": "运行中",
    "completed": "已完成",
    "failed": "失败",
    "cancelled": "已取消",
    "interrupted": "已中断",
}

#: The ``what`` of storage_error / StorageFullError.from_os_error: what could not be done.
_STORAGE_TASKS: Sequence[tuple[str, str]] = (
    (r"the upload could not be kept", "上传的文件无法保存"),
    (r"the job history cannot be opened in (?P<dir>.+)", "无法在 {dir} 中打开任务历史记录"),
    (r"the cache directory (?P<dir>.+) cannot be used \(set storage\.cache_dir\)",
     "缓存目录 {dir} 无法使用（请设置 storage.cache_dir）"),
    (r"the download files could not be written \(the transcript is saved in History\)",
     "下载文件无法写入（转写稿已保存在历史记录中）"),
    (r"the ZIP could not be written \(the transcripts are saved in History\)",
     "ZIP 文件无法写入（转写稿已保存在历史记录中）"),
)

#: What the job history found wrong with its database (JobStore._problem).
_STORE_PROBLEMS: Sequence[tuple[str, str]] = (
    (r"the state directory (?P<dir>.+) is gone", "状态目录 {dir} 已不存在"),
    (r"the job database (?P<path>.+) was deleted while the service ran \(restart the service\)",
     "任务数据库 {path} 在服务运行期间被删除（请重启服务）"),
    (r"the job database (?P<path>.+) was replaced while the service ran \(restart the service\)",
     "任务数据库 {path} 在服务运行期间被替换（请重启服务）"),
    (r"the job database (?P<path>.+) cannot be read: (?P<reason>.*)", "任务数据库 {path} 无法读取：{reason}"),
    (r"the job database (?P<path>.+) or its directory is not writable", "任务数据库 {path} 或其所在目录不可写"),
)

_CONVERT = (r" Please convert it to WAV, MP3, M4A, FLAC or Opus and try again\.",
            "请将其转换为 WAV、MP3、M4A、FLAC 或 Opus 后重试。")

# ---- the catalog -------------------------------------------------------------------------------------

#: (English, Chinese) for every message the package gives a user, most specific first. The English is
#: matched whole (after an optional "name: " prefix, see _translate); its named groups fill the Chinese.
#: A group named in _GROUPS is itself translated there; any other is a parameter and goes in unchanged.
_CATALOG: Sequence[tuple[str, str]] = (
    # -- audio files (asr.core.audio, asr.core.isolation); each one follows "{file name}: "
    (r"The file is empty\.", "文件是空的。"),
    (r"The file is too large \((?P<size>[\d.]+) MB; the limit is (?P<limit>[\d.]+) MB\)\.",
     "文件过大：{size} MB（上限为 {limit} MB）。"),
    (r"This looks like (?P<looks>.+), not audio\. Please upload an audio or video recording\.",
     "这看起来是{looks}，不是音频。请上传音频或视频录音。"),
    (r"The file is damaged or incomplete: it starts like (?P<kind>.+) but cannot be read\.",
     "文件已损坏或不完整：开头像是{kind}文件，但无法读取。"),
    (r"The file is damaged or incomplete: no part of its audio could be decoded\.",
     "文件已损坏或不完整：音频的任何部分都无法解码。"),
    (r"The file is damaged and could not be decoded\.", "文件已损坏，无法解码。"),
    (r"This looks like (?P<looks>.+), a format that is not supported\." + _CONVERT[0],
     "这看起来是{looks}，这种格式不受支持。" + _CONVERT[1]),
    (r"The audio is encoded with (?P<codec>.+), which is not supported\." + _CONVERT[0],
     "音频采用{codec}，不受支持。" + _CONVERT[1]),
    (r"This is not an audio or video file that can be read\.", "这不是可以读取的音频或视频文件。"),
    (r"The file has video but no audio track\.", "文件有视频，但没有音轨。"),
    (r"The file contains no audio track\.", "文件中没有音轨。"),
    (r"The file contains no audio samples\.", "文件中没有音频采样。"),
    (r"The recording is longer than the limit: (?P<length>.+) \(the maximum is (?P<limit>.+)\)\.",
     "录音超过了时长上限：{length}（上限为 {limit}）。"),
    (r"The recording is longer than the limit of (?P<limit>.+)\.", "录音超过了时长上限 {limit}。"),
    (r"The file holds more audio than its header says: the header says (?P<claimed>.+), the file holds at least "
     r"(?P<held>.+), longer than the limit of (?P<limit>.+)\.",
     "文件中的音频比文件头所写的更长：文件头写的是 {claimed}，实际至少有 {held}，超过了时长上限 {limit}。"),
    (r"The file holds more audio than its header says \((?P<claimed>.+)\); decoding was stopped there\.",
     "文件中的音频比文件头所写的（{claimed}）更长，解码已在该处停止。"),
    (r"The decoder ran out of memory on this file\.", "解码器处理此文件时内存不足。"),
    (r"the decoder stopped making progress \((?P<stall>[\d.e+]+) s without output\) and was stopped; "
     r"the file may be damaged",
     "解码器停滞不前（{stall} 秒没有输出），已被停止；文件可能已损坏。"),
    (r"decoding took longer than (?P<limit>[\d.e+]+) s and was stopped; the file may be damaged",
     "解码用时超过 {limit} 秒，已被停止；文件可能已损坏。"),
    (r"the decoder crashed on this file \((?P<ended>.+)\); the file may be damaged",
     "解码器处理此文件时崩溃了（{ended}）；文件可能已损坏。"),
    (r"the decoder returned no description of the file", "解码器没有返回文件的描述信息。"),
    # -- hotwords (asr.core.hotwords, asr.core.options)
    (r"hotword file (?P<path>.+) is not UTF-8 text \((?P<reason>.+) at byte (?P<byte>\d+)\)",
     "热词文件 {path} 不是 UTF-8 文本（第 {byte} 字节：{reason}）。"),
    (r"cannot read the hotword file (?P<path>.+) \(hotwords\.file\): (?P<reason>.*)",
     "无法读取热词文件 {path}（hotwords.file）：{reason}"),
    (r"cannot read the hotword file (?P<path>.+): (?P<reason>.*)", "无法读取热词文件 {path}：{reason}"),
    (r"hotwords must be a string or a list of strings, not (?P<type>\S+)",
     "热词必须是字符串或字符串列表，而不是 {type}。"),
    (r"hotwords must be strings; got (?P<type>\S+) (?P<value>.*)", "热词必须是字符串，而收到的是 {type} {value}。"),
    (r"hotword (?P<word>'.*'|\".*\") in (?P<file>.+) has (?P<n>\d+) characters; at most (?P<most>\d+) "
     r"\(hotwords\.max_chars\)",
     "{file} 中的热词 {word} 有 {n} 个字符，最多 {most} 个（hotwords.max_chars）。"),
    (r"hotword (?P<word>'.*'|\".*\") has (?P<n>\d+) characters; at most (?P<most>\d+) \(hotwords\.max_chars\)",
     "热词 {word} 有 {n} 个字符，最多 {most} 个（hotwords.max_chars）。"),
    (r"(?P<n>\d+) hotwords, (?P<from_file>\d+) of them from (?P<file>.+) \(hotwords\.file\); at most (?P<most>\d+) "
     r"\(hotwords\.max_count\)",
     "共有 {n} 个热词（其中 {from_file} 个来自 {file}，hotwords.file），最多 {most} 个（hotwords.max_count）。"),
    (r"(?P<n>\d+) hotwords; at most (?P<most>\d+) \(hotwords\.max_count\)",
     "共有 {n} 个热词，最多 {most} 个（hotwords.max_count）。"),
    (r"hotwords need the SeACo-Paraformer model, which this deployment does not run: set models\.asr_model: seaco "
     r"in config\.yaml \(and fetch it with `asr download`\)",
     "热词需要 SeACo-Paraformer 模型，而本服务没有运行它：请在 config.yaml 中设置 models.asr_model: seaco"
     "（并用 `asr download` 下载该模型）。"),
    # -- speakers (asr.core.options, asr.core.speakers, asr.core.pipeline)
    (r"speaker labels need the CAM\+\+ speaker model, which this deployment does not load: set models\.profile: "
     r"vad\+asr\+punc\+spk in config\.yaml \(and fetch it with `asr download`\)",
     "说话人标注需要 CAM++ 说话人模型，而本服务没有加载它：请在 config.yaml 中设置 models.profile: "
     "vad+asr+punc+spk（并用 `asr download` 下载该模型）。"),
    (r"speaker labels need the CAM\+\+ speaker model: use the profile vad\+asr\+punc\+spk",
     "说话人标注需要 CAM++ 说话人模型：请使用 vad+asr+punc+spk 配置。"),
    (r"(?P<name>num_speakers|min_speakers|max_speakers) must be between 1 and (?P<most>\d+) "
     r"\(speakers\.max_speakers\), not (?P<value>-?\d+)",
     "{name} 必须在 1 到 {most} 之间（speakers.max_speakers），而不是 {value}。"),
    (r"min_speakers \((?P<low>-?\d+)\) is above max_speakers \((?P<high>-?\d+)\)",
     "min_speakers（{low}）大于 max_speakers（{high}）。"),
    (r"give either num_speakers or a min_speakers/max_speakers range, not both",
     "请只给出 num_speakers 或 min_speakers/max_speakers 范围中的一种，不要同时给出。"),
    (r"the number of speakers must be at least 1, not (?P<n>-?\d+)", "说话人数至少为 1，而不是 {n}。"),
    (r"the least and the most speakers must be at least 1", "最少和最多说话人数都必须至少为 1。"),
    (r"at least (?P<low>-?\d+) speakers but at most (?P<high>-?\d+): the least is above the most",
     "至少 {low} 位说话人，但最多 {high} 位：最少人数大于最多人数。"),
    # -- the pipeline (asr.core.pipeline)
    (r"out of (?P<device>\S+) memory on a (?P<seconds>\d+) s speech segment; lower vad\.max_segment_ms or "
     r"asr\.batch_frames, or free device memory",
     "处理一段 {seconds} 秒的语音时 {device} 内存不足：请调低 vad.max_segment_ms 或 asr.batch_frames，"
     "或释放设备内存。"),
    (r"this service was started with the VAD-only profile; it cannot transcribe",
     "本服务以仅含 VAD 的配置启动，无法转写。"),
    (r"speech detection needs the VAD model: use a profile with 'vad'",
     "语音检测需要 VAD 模型：请使用包含 'vad' 的配置。"),
    (r"the service's device failed: (?P<inner>.+)", "服务的计算设备出现故障：{inner}。"),
    (r"the (?P<device>\S+) device failed: (?P<detail>.+)", "{device} 设备出现故障：{detail}"),
    # -- output formats (asr.core.writers, asr.service.api)
    (r"no output format given; choose from (?P<formats>.+)", "没有给出输出格式，可选：{formats}。"),
    (r"unknown output format (?P<unknown>.+); choose from (?P<formats>.+)",
     "未知的输出格式 {unknown}，可选：{formats}。"),
    (r"format must be one of (?P<formats>.+) for a VAD job", "VAD 任务的格式必须是以下之一：{formats}。"),
    (r"format must be one of (?P<formats>.+)", "格式必须是以下之一：{formats}。"),
    (r"unknown format (?P<unknown>.+); choose from (?P<formats>.+)", "未知的格式 {unknown}，可选：{formats}。"),
    (r"response_format must be one of (?P<formats>.+)", "response_format 必须是以下之一：{formats}。"),
    (r"kind must be transcribe or vad", "kind 必须是 transcribe 或 vad。"),
    # -- transcript edits (asr.service.edits, asr.service.engine)
    (r"the edit changes nothing: give sentences to change or speaker names",
     "这次编辑没有改动任何内容：请给出要修改的句子或说话人名称。"),
    (r"sentence (?P<index>-?\d+): the text is empty \(to drop words, leave at least one\)",
     "句子 {index}：文本为空（删减文字时请至少保留一个字）。"),
    (r"sentence (?P<index>-?\d+): the text has (?P<n>\d+) characters, more than the (?P<most>\d+) a sentence may have",
     "句子 {index}：文本有 {n} 个字符，超过了每句最多 {most} 个字符的上限。"),
    (r"sentence (?P<index>-?\d+): the text contains a control character \((?P<char>U\+[0-9A-F]{4,})\); "
     r"a sentence is one line of text",
     "句子 {index}：文本含有控制字符（{char}）；一个句子只能是一行文字。"),
    (r"speaker (?P<index>-?\d+): the name is empty", "说话人 {index}：名称为空。"),
    (r"speaker (?P<index>-?\d+): the name has (?P<n>\d+) characters, more than the (?P<most>\d+) allowed",
     "说话人 {index}：名称有 {n} 个字符，超过了上限 {most} 个。"),
    (r"speaker (?P<index>-?\d+): the name contains a control character \((?P<char>U\+[0-9A-F]{4,})\); "
     r"a sentence is one line of text",
     "说话人 {index}：名称含有控制字符（{char}）；名称只能是一行文字。"),
    (r"sentence (?P<index>-?\d+) is edited twice in one request; send one edit per sentence",
     "句子 {index} 在同一个请求中被编辑了两次：每个句子只能有一项编辑。"),
    (r"sentence (?P<index>-?\d+) does not exist: the transcript's sentences are 0 to (?P<last>\d+)",
     "句子 {index} 不存在：转写稿的句子编号为 0 到 {last}。"),
    (r"sentence (?P<index>-?\d+) does not exist: the transcript's sentences are none: "
     r"there is no speech in this transcript",
     "句子 {index} 不存在：这份转写稿中没有语音，也就没有句子。"),
    (r"sentence (?P<index>-?\d+): speaker (?P<speaker>-?\d+) does not exist: give 0 to (?P<last>\d+), "
     r"or (?P<next>\d+) to add a new speaker",
     "句子 {index}：说话人 {speaker} 不存在：请给出 0 到 {last}，或给出 {next} 来添加一位新说话人。"),
    (r"sentence (?P<index>-?\d+): speaker (?P<speaker>-?\d+) does not exist: give (?P<next>\d+) "
     r"to add a new speaker",
     "句子 {index}：说话人 {speaker} 不存在：请给出 {next} 来添加一位新说话人。"),
    (r"(?P<names>\d+) speaker names for (?P<speakers>\d+) speakers; "
     r"a speaker is added by giving a sentence the next speaker id",
     "给出了 {names} 个说话人名称，但只有 {speakers} 位说话人；要添加说话人，请给一个句子指定下一个说话人编号。"),
    (r"job (?P<job>\S+) is a VAD job: it has speech segments, no transcript to edit",
     "任务 {job} 是 VAD 任务：它只有语音片段，没有可编辑的转写稿。"),
    (r"the search text has (?P<n>\d+) characters, more than the (?P<most>\d+) allowed",
     "搜索文本有 {n} 个字符，超过了上限 {most} 个。"),
    # -- jobs and the engine (asr.service.engine, asr.service.jobs)
    (r"the service is starting or stopping; try again in a moment", "服务正在启动或停止，请稍后再试。"),
    (r"busy: (?P<waiting>\d+) jobs waiting; try again later", "服务繁忙：有 {waiting} 个任务在排队，请稍后再试。"),
    (r"the models are loading", "模型正在加载。"),
    (r"the live models are loading; try again in a moment", "实时字幕的模型正在加载，请稍后再试。"),
    (r"busy: (?P<streams>\d+) live streams, the most this service runs at once \(live\.max_streams\); try again later",
     "服务繁忙：已有 {streams} 路实时音频流，达到本服务同时处理的上限（live.max_streams），请稍后再试。"),
    (r"nothing was received for (?P<seconds>[\d.]+) s \(live\.idle_timeout_s\); the stream is closed",
     "{seconds} 秒内没有收到任何数据（live.idle_timeout_s），音频流已关闭。"),
    (r"send the JSON configuration message first \(mode, chunk_size, audio_fs \.\.\.\), then the audio",
     "请先发送 JSON 配置消息（mode、chunk_size、audio_fs……），再发送音频。"),
    (r"an audio frame of (?P<size>\d+) KB is larger than the (?P<limit>\d+) KB allowed \(live\.max_frame_kb\)",
     "音频帧大小 {size} KB，超过了允许的 {limit} KB（live.max_frame_kb）。"),
    (r"audio frames must be PCM16: an even number of bytes", "音频帧必须是 PCM16：字节数应为偶数。"),
    (r"mode must be one of online, offline, 2pass, not (?P<mode>.+)", "mode 必须是 online、offline 或 2pass 之一，不能是 {mode}。"),
    (r"audio_fs must be 16000 or 8000 \(PCM16 mono\), not (?P<rate>\S+)", "audio_fs 必须是 16000 或 8000（PCM16 单声道），不能是 {rate}。"),
    (r"chunk_size must be three whole numbers such as 5,10,5, not (?P<value>.+)", "chunk_size 必须是三个整数，例如 5,10,5，不能是 {value}。"),
    (r"chunk_interval must be between 1 and 100, not (?P<value>\S+)", "chunk_interval 必须在 1 到 100 之间，不能是 {value}。"),
    (r"(?P<name>\w+_chunk_look_back) must be between 0 and (?P<most>\d+) chunks, not (?P<value>\S+)",
     "{name} 必须在 0 到 {most} 个分块之间，不能是 {value}。"),
    (r"(?P<name>\w+) must be a whole number, not (?P<value>.+)", "{name} 必须是整数，不能是 {value}。"),
    (r"wav_format must be pcm \(PCM16 mono frames\), not (?P<value>.+)", "wav_format 必须是 pcm（PCM16 单声道音频帧），不能是 {value}。"),
    (r"a text message must be JSON, such as \{\"is_speaking\": false\}", "文本消息必须是 JSON，例如 {{\"is_speaking\": false}}。"),
    (r"a text message must be a JSON object", "文本消息必须是 JSON 对象。"),
    (r"log in first: the UI's login, or ws://user:password@host \(HTTP Basic\)",
     "请先登录：使用界面的登录，或 ws://用户名:密码@主机（HTTP Basic）。"),
    (r"live captions need the streaming model: use the profile vad\+asr\+punc\+live",
     "实时字幕需要流式模型：请使用 vad+asr+punc+live 配置。"),
    (r"job (?P<job>\S+) has already finished \((?P<state>\w+)\)", "任务 {job} 已经结束（{state}）。"),
    (r"job (?P<job>\S+) is not active in this process", "任务 {job} 不在本进程中运行。"),
    (r"no job with id (?P<job>'[^']*'|\"[^\"]*\") \(it may have expired from the history\)",
     "找不到 ID 为 {job} 的任务（它可能已从历史记录中过期删除）。"),
    (r"no job with id (?P<job>'[^']*'|\"[^\"]*\")", "找不到 ID 为 {job} 的任务。"),
    (r"job (?P<job>\S+) is (?P<state>\w+), not completed", "任务 {job} 的状态为“{state}”，没有结果。"),
    (r"job (?P<job>\S+) is (?P<state>\w+): cancel it first, then delete it",
     "任务 {job} 的状态为“{state}”：请先取消，再删除。"),
    (r"cancelled while running", "任务在运行时被取消。"),
    (r"cancelled before it started", "任务在开始前被取消。"),
    (r"the service was stopped before this job started", "服务在此任务开始前已停止。"),
    (r"the service stopped or restarted while this job was waiting or running; please submit it again",
     "此任务排队或运行期间，服务停止或重启了，请重新提交。"),
    (r"internal error while processing this file", "处理此文件时发生了内部错误。"),
    (r"internal error; the details are in the service log", "发生了内部错误，详情见服务日志。"),
    (r"completed, but not saved to the history: (?P<inner>.+)", "已完成，但未能保存到历史记录：{inner}。"),
    # -- storage (asr.errors, asr.service.jobs)
    (r"the server's storage is full; (?P<task>.+), try again later", "服务器的存储空间已满，{task}，请稍后再试。"),
    (r"(?P<task>.+?): (?P<path>.+) is not usable \((?P<reason>.*)\)", "{task}：{path} 无法使用（{reason}）。"),
    (r"the job history could not be saved: the disk holding (?P<dir>.+) is full",
     "任务历史记录无法保存：{dir} 所在的磁盘已满。"),
    (r"the job history could not be saved: (?P<path>.+) cannot be written \((?P<reason>.*)\)",
     "任务历史记录无法保存：{path} 无法写入（{reason}）。"),
    (r"the job history (?P<path>.+) cannot be opened: (?P<reason>.+) \(the service user needs write access to "
     r"(?P<dir>.+); or set storage\.state_dir\)",
     "无法打开任务历史记录 {path}：{reason}（服务用户需要 {dir} 的写权限，或者设置 storage.state_dir）。"),
    (r"(?P<problem>.+); no job is accepted until it is fixed", "{problem}；修复之前不接受任何任务。"),
    # -- requests, uploads and logins (asr.service.api, uploads, guards, server)
    (r"log in first", "请先登录。"),
    (r"login required: send Authorization: Basic \(or Bearer user:password\)",
     "需要登录：请发送 Authorization: Basic（或 Bearer user:password）。"),
    (r"login failed: wrong user name or password", "登录失败：用户名或密码错误。"),
    (r"too many failed logins; try again in (?P<wait>\d+) s", "登录失败次数过多，请 {wait} 秒后再试。"),
    (r"the login form is too large", "登录表单过大。"),
    (r"the file is larger than the (?P<limit>\d+) MB limit", "文件超过了 {limit} MB 的上限。"),
    (r"the recording is larger than the (?P<limit>\d+) MB limit", "录音超过了 {limit} MB 的上限。"),
    (r"the upload is larger than the (?P<limit>\d+) MB a request may send; send fewer files at once",
     "上传的内容超过了一个请求最多 {limit} MB 的上限，请一次少传几个文件。"),
    (r"the request body is larger than the (?P<limit>\d+) MB allowed", "请求体超过了 {limit} MB 的上限。"),
    (r"the server's upload space \((?P<limit>\d+) MB\) is taken by uploads in progress; try again when they are done",
     "服务器的上传空间（{limit} MB）已被进行中的上传占满，请等它们完成后再试。"),
    (r"a UI request may carry at most (?P<limit>\d+) KB", "一个界面请求最多只能携带 {limit} KB。"),
    (r"the upload could not be read: (?P<detail>.*)", "上传的内容无法读取：{detail}"),
    (r"files are uploaded through the upload route only", "文件只能通过上传接口上传。"),
    (r"the request names a file on the server that this service did not hand out; upload the file instead",
     "请求中指定了服务器上一个并非由本服务提供的文件，请改为上传该文件。"),
    (r"no playback audio for this job", "此任务没有可播放的音频。"),
    (r"no such session \(it ended, or never began\)", "没有这个会话（它已结束，或从未开始）。"),
    (r"no such event", "没有这个事件。"),
    (r"this service does not answer to the host name (?P<host>.+); an operator can add it to server\.allowed_hosts",
     "本服务不响应主机名 {host}；管理员可以把它加入 server.allowed_hosts。"),
    (r"cross-origin request refused \(Origin does not match this service\)",
     "已拒绝跨域请求（Origin 与本服务不符）。"),
    (r"send one file per request \(this one has (?P<n>\d+) 'file' fields\)",
     "每个请求只能发送一个文件（这个请求有 {n} 个 'file' 字段）。"),
    (r"no API route (?P<route>\S+) \(see /v1/docs\)", "没有 API 路由 {route}（参见 /v1/docs）。"),
    (r"invalid request: (?P<detail>.+)", "请求无效：{detail}"),
)

#: code -> what a message with that code means, for a message the catalog does not know. Every code of
#: every AsrError subclass has one (the tests walk the class tree), and the codes the engine and the API
#: give without a class of their own (a job interrupted by a restart, a framework's HTTP errors).
_SUMMARIES: dict[str, str] = {
    "internal_error": "服务出现了内部错误",
    "bad_audio": "文件无法作为音频使用",
    "empty_file": "文件是空的",
    "not_audio": "文件不是音频",
    "no_audio_track": "文件中没有音轨",
    "corrupt_audio": "音频文件已损坏",
    "unsupported_codec": "不支持这种音频格式",
    "audio_too_long": "录音太长",
    "file_too_large": "文件太大",
    "decoder_failed": "解码器无法处理这个文件",
    "config_error": "服务的配置有误",
    "model_error": "模型无法使用",
    "model_not_found": "找不到模型",
    "model_incomplete": "模型文件不完整",
    "manifest_mismatch": "模型文件与清单不符",
    "download_failed": "模型下载失败",
    "bad_bundle": "模型包无法使用",
    "busy": "服务繁忙，请稍后再试",
    "idle_timeout": "长时间没有收到数据，连接已关闭",
    "not_ready": "服务尚未就绪",
    "job_not_found": "找不到这个任务",
    "cancelled": "任务已取消",
    "not_completed": "任务尚未完成",
    "job_active": "任务仍在排队或运行",
    "already_finished": "任务已经结束",
    "invalid_request": "请求无效",
    "bad_hotwords": "热词有误",
    "hotwords_unavailable": "本服务不支持热词",
    "bad_speakers": "说话人数的设置有误",
    "speakers_unavailable": "本服务不支持说话人标注",
    "bad_edit": "这项编辑无法应用",
    "not_found": "找不到所请求的内容",
    "login_required": "需要登录",
    "too_many_login_attempts": "登录失败次数过多",
    "forbidden_host": "本服务不响应这个主机名",
    "forbidden_origin": "已拒绝跨域请求",
    "forbidden_file": "不允许使用这个文件",
    "request_too_large": "请求太大",
    "out_of_memory": "内存不足",
    "storage_full": "服务器的存储空间已满",
    "storage_unavailable": "服务器的存储无法使用",
    "device_failed": "计算设备出现故障",
    "interrupted": "任务被中断",
    "forbidden": "禁止访问",
    "method_not_allowed": "不支持这种请求方法",
    "conflict": "请求与当前状态冲突",
    "unsupported_media_type": "不支持这种内容类型",
    "too_many_requests": "请求太频繁，请稍后再试",
}

#: For a message that comes with no code at all (a job row written without one).
_NO_CODE = "出错了"


def localize(message: str, code: str | None, language: Language) -> str:
    """The user-facing message in ``language``: unchanged for "en"; for "zh" a full Chinese translation
    when the catalog knows the message, else the code's Chinese summary followed by the English
    original in parentheses (an unknown code reads as an internal error, no code as a plain "error")."""
    if language != "zh":
        return message
    translated = _translate(message)
    if translated is not None:
        return translated
    summary = _NO_CODE if code is None else _SUMMARIES.get(code, _SUMMARIES["internal_error"])
    return f"{summary}（{message}）" if message.strip() else f"{summary}。"


def _translate(message: str) -> str | None:
    """The catalog's Chinese for ``message``, or None when no entry matches.

    A message may start with a file name, "name: ..." (asr.core.audio's _Source.say): the name may hold
    ": " itself, so each ": " is tried in turn as the end of the name, and the first tail the catalog
    knows wins; the name is kept exactly as it was."""
    whole = _lookup(message, _COMPILED)
    if whole is not None:
        return whole
    start = 0
    while (at := message.find(": ", start)) != -1:
        tail = _lookup(message[at + 2:], _COMPILED) if at > 0 else None
        if tail is not None:
            return f"{message[:at]}：{tail}"
        start = at + 1
    return None


_Compiled = Sequence[tuple[re.Pattern[str], str]]


def _compile(catalog: Sequence[tuple[str, str]]) -> _Compiled:
    return tuple((re.compile(english, re.DOTALL), chinese) for english, chinese in catalog)


def _lookup(text: str, catalog: _Compiled) -> str | None:
    for pattern, chinese in catalog:
        found = pattern.fullmatch(text)
        if found is None:
            continue
        values = {}
        for name, value in found.groupdict().items():
            convert = _GROUPS.get(name)
            values[name] = value if convert is None or value is None else convert(value)
        # A phrase the tables do not know makes no full translation: the next entry or the fallback.
        if all(v is not None for v in values.values()):
            return chinese.format(**values)
    return None


def _spaced(text: str) -> str:
    """``text`` set between Chinese words: a space on each side where a Latin letter or digit meets them."""
    if text[:1].isascii() and text[:1].isalnum():
        text = " " + text
    if text[-1:].isascii() and text[-1:].isalnum():
        text += " "
    return text


def _codec(name: str) -> str:
    unknown = re.fullmatch(r"an unknown codec(?: \(WAVE format tag (?P<tag>0x[0-9a-f]+)\))?", name)
    if unknown is None:
        return f"{_spaced(name)}编码"
    return f"未知编码（WAVE 格式标签 {unknown['tag']}）" if unknown["tag"] else "未知编码"


def _ended(how: str) -> str:
    signal = re.fullmatch(r"signal (\S+)", how)
    if signal is not None:
        return f"信号 {signal[1]}"
    exit_code = re.fullmatch(r"exit code (-?\d+)", how)
    return how if exit_code is None else f"退出码 {exit_code[1]}"


def _inner(message: str) -> str | None:
    """A whole message inside another (the device failure, the error that kept a result unsaved)."""
    translated = _translate(message)
    return translated.removesuffix("。") if translated is not None else message


def _phrase(catalog: _Compiled) -> Callable[[str], str | None]:
    return lambda text: _lookup(text, catalog)


_GROUPS: dict[str, Callable[[str], str | None]] = {
    "looks": _LOOKS_LIKE.get,
    "kind": lambda kind: _spaced(_AUDIO_KINDS.get(kind, kind)),
    "codec": _codec,
    "ended": _ended,
    "state": _STATES.get,
    "inner": _inner,
    "task": _phrase(_compile(_STORAGE_TASKS)),
    "problem": _phrase(_compile(_STORE_PROBLEMS)),
}

_COMPILED = _compile(_CATALOG)
