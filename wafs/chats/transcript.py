"""The text of WhatsApp's *Export chat*: header formats, media file names, the fixed phrases."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal

from .names import clean_text

Locale = Literal["en_GB", "en_US"]
LOCALES: tuple[Locale, ...] = ("en_GB", "en_US")

# The phrases of an English export (Android's wording).
MEDIA_OMITTED = "<Media omitted>"
DELETED = "This message was deleted"
YOU_DELETED = "You deleted this message"
EDITED = "<This message was edited>"
WAITING = "Waiting for this message. This may take a while."
ATTACHED = "{name} (file attached)"

#: Media type -> file extension, without the system's mime.types (the same names on every machine).
EXTENSIONS = {
    "image/jpeg": "jpg", "image/jpg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif",
    "image/heic": "heic", "video/mp4": "mp4", "video/3gpp": "3gp", "video/quicktime": "mov",
    "video/webm": "webm", "audio/ogg": "opus", "audio/opus": "opus", "audio/mpeg": "mp3", "audio/mp3": "mp3",
    "audio/mp4": "m4a", "audio/m4a": "m4a", "audio/aac": "aac", "audio/amr": "amr", "audio/wav": "wav",
    "audio/x-wav": "wav", "application/pdf": "pdf", "application/zip": "zip", "text/plain": "txt",
    "text/vcard": "vcf", "text/x-vcard": "vcf", "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.ms-powerpoint": "ppt",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
}
#: What a file of each prefix is when its media type is unknown.
DEFAULT_EXTENSIONS = {"IMG": "jpg", "VID": "mp4", "AUD": "opus", "PTT": "opus", "STK": "webp", "DOC": "bin",
                      "VCF": "vcf"}


def extension(mimetype: str, prefix: str) -> str:
    """``"audio/ogg; codecs=opus"`` -> ``"opus"``; unknown types get the prefix's usual extension."""
    base = mimetype.split(";", 1)[0].strip().lower()
    return EXTENSIONS.get(base, DEFAULT_EXTENSIONS.get(prefix, "bin"))


def local_time(timestamp: int, tz: datetime.tzinfo | None) -> datetime.datetime:
    """Seconds since the epoch in ``tz`` (``None``: the machine's local time zone)."""
    if tz is None:
        return datetime.datetime.fromtimestamp(timestamp).astimezone()
    return datetime.datetime.fromtimestamp(timestamp, tz)


def header(moment: datetime.datetime, locale: Locale) -> str:
    """``[31/12/2024, 23:59:59]`` (en_GB) or ``[12/31/24, 11:59:59 PM]`` (en_US)."""
    if locale == "en_US":
        hour = moment.hour % 12 or 12
        half = "AM" if moment.hour < 12 else "PM"
        return (f"[{moment.month}/{moment.day}/{moment.year % 100:02d}, "
                f"{hour}:{moment.minute:02d}:{moment.second:02d} {half}]")
    return (f"[{moment.day:02d}/{moment.month:02d}/{moment.year:04d}, "
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}]")


def normalize_newlines(text: str) -> str:
    return clean_text(text).replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True)
class Line:
    """One message of a transcript: when, who, and the text (which may span several lines)."""

    timestamp: int
    sender: str
    text: str
    mid: str = ""
    placeholder: bool = False  # the message could not be read or is not supported

    def render(self, tz: datetime.tzinfo | None, locale: Locale) -> str:
        """``[date, time] Sender: text`` and the text's further lines, ending in a newline."""
        return f"{header(local_time(self.timestamp, tz), locale)} {self.sender}: {self.text}\n"
