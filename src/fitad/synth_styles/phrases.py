"""What the lettering says: dialogue, captions, vertical columns and sound effects, Korean and English.

Korean uses common syllables (all in KS X 1001, so the bundled font draws them); every line is still
checked against the chosen font before it is drawn.
"""

from __future__ import annotations

import numpy as np

DIALOGUE = {
    "ko": ("잠깐만!", "어디 가는 거야?", "말도 안 돼...", "이제 시작이야", "괜찮아?", "빨리 와!",
           "내가 할게", "정말이야?", "오늘은 안 돼", "조심해!", "기다려 줘", "무슨 일이야?",
           "그럴 리가 없어", "같이 가자", "고마워", "늦었잖아!", "비가 올 것 같아", "여기서 기다려",
           "믿을 수 없어", "다시 한 번 해 봐", "배고파...", "저기 봐!", "숨어!", "이게 뭐야?",
           "약속했잖아", "난 포기 안 해", "시간이 없어", "조용히 해", "문을 열어!", "집에 가고 싶어",
           "누가 거기 있어?", "괜히 왔나 봐", "좋아, 해 보자!", "그건 내 거야"),
    "en": ("WAIT!", "Where are you going?", "No way...", "It's starting now.", "Are you okay?",
           "Hurry up!", "Leave it to me.", "Really?", "Not today.", "Watch out!", "Wait for me.",
           "What happened?", "That can't be!", "Let's go together.", "Thanks.", "You're late!",
           "Looks like rain.", "Stay right here.", "Unbelievable.", "Try it again.", "I'm starving...",
           "Look over there!", "Hide!", "What is this?", "You promised.", "I won't give up.",
           "We're out of time.", "Be quiet.", "Open the door!", "I want to go home.",
           "Who's there?", "OK, let's do it!", "That's mine!"),
}

CAPTIONS = {
    "ko": ("그날 밤, 도시는 조용했다.", "3년 후", "한편, 학교 옥상에서는...", "아무도 몰랐다.",
           "다음 날 아침", "그리고 그때", "비가 그치지 않았다.", "모든 것은 여기서 시작되었다.",
           "약속 시간 10분 전", "그 여름의 마지막 날"),
    "en": ("That night, the city was silent.", "Three years later", "Meanwhile, on the roof...",
           "Nobody knew.", "The next morning", "And then...", "The rain would not stop.",
           "It all started here.", "Ten minutes to go", "The last day of summer"),
}

# Vertical columns: Korean only, no spaces or punctuation (those turn sideways when set vertically).
COLUMNS = ("잠깐", "어디가", "조용히", "거짓말", "정말로", "기다려", "도망쳐", "괜찮아", "그만해",
           "누구냐", "어째서", "믿어줘", "돌아와", "지금이야", "안녕", "사랑해", "비밀이야", "가자")

SOUND_EFFECTS = {
    "ko": ("쾅", "두둥", "쿵쾅", "휘익", "콰광", "펑", "쉬익", "덜컹", "쿵", "파바박", "슈욱",
           "와장창", "두근두근", "쨍"),
    "en": ("BAM!", "WHOOSH", "BOOM", "CRASH!", "ZAP", "THUD", "WHAM!", "POW!", "SNAP", "KRAK",
           "BANG!", "ZOOM"),
}


def pick(rng: np.random.Generator, pool: tuple[str, ...]) -> str:
    return pool[int(rng.integers(len(pool)))]


def wrap(text: str, max_chars: int) -> list[str]:
    """Greedy word wrap to lines of at most ``max_chars`` (a longer single word keeps its own line)."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= max_chars:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [text]


def dialogue_lines(rng: np.random.Generator, lang: str, max_lines: int = 4) -> list[str]:
    """1-``max_lines`` lines of speech: one or two phrases, long ones wrapped like balloon lettering."""
    lines: list[str] = []
    said: set[str] = set()
    for _ in range(1 + int(rng.random() < 0.45)):
        phrase = pick(rng, DIALOGUE[lang])
        if phrase in said:  # a repeated sentence reads like a bug
            break
        said.add(phrase)
        width = int(rng.integers(6, 12)) if lang == "ko" else int(rng.integers(9, 18))
        wrapped = wrap(phrase, width)
        if len(lines) + len(wrapped) > max_lines:  # whole phrases only, never a cut-off sentence
            if lines:
                break
            while len(wrapped) > max_lines:
                width += 1
                wrapped = wrap(phrase, width)
        lines.extend(wrapped)
    return lines


def caption_lines(rng: np.random.Generator, lang: str) -> list[str]:
    width = int(rng.integers(9, 16)) if lang == "ko" else int(rng.integers(14, 26))
    return wrap(pick(rng, CAPTIONS[lang]), width)[:3]


def vertical_columns(rng: np.random.Generator) -> list[str]:
    """1-3 columns, read right to left: a phrase per column."""
    count = 1 + int(rng.integers(0, 3))
    return [pick(rng, COLUMNS) for _ in range(count)]
