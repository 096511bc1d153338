#!/usr/bin/env python3
"""Compile the project's Chinese ITN grammar into the two FSTs that ``asr/core/itn.py`` loads.

Development time only: this needs WeTextProcessing and pynini (about 720 MB), which the service never
installs. The service runs the compiled ``tagger.fst`` and ``verbalizer.fst`` with the ``wetext`` runtime
(``kaldifst``), exactly as it runs wetext's own FSTs.

    pip install --target DIR wetextprocessing==1.2.0
    PYTHONPATH=DIR python3 scripts/build_itn_fst.py --out asr/core/itn_fst

The grammar is WeTextProcessing 1.2.0's ``itn/chinese`` (built as wetext builds it: standalone numbers on,
0-9 alone left as words, no interjection removal), changed only where its house style differs from what
this project writes (docs/ITN.md):

- dates in Chinese units: 二零二四年三月 → 2024年3月, 五月二十号 → 5月20号 (not 2024/03, 05/20);
- times in Chinese units, the spoken words kept: 下午三点二十分 → 下午3点20分, 八点半 → 8点半,
  十点零五分 → 10点05分, 三点一刻 → 3点一刻 (not 3:20p.m., 8:30a.m., 10:05);
- money and measures keep their unit as spoken: 125元, 38美元, 2500万人民币, 10300米, 30公斤,
  200毫升, 36.8度, 0.5秒 (not ¥125, $38, CNY2500万, 10300m, 30kg, 200ml, 36.8°, 0.5s);
- rates keep their spoken order: 每小时十公里 → 每小时10公里 (not 10km/h);
- ranges keep 到: 三到五天 → 3到5天, 百分之三十到四十 → 30到40% (not 3~5天, 30~40%);
- a single digit is converted before a multi-character measurement unit (五公里 → 5公里, not 五个 → 5个),
  in 一米八 → 1米8, and in an ordinal before a ranking counter (第一名 → 第1名, not 第一次).

Each change is a subclass of WeTextProcessing's rule class overriding the part that makes the style, or
a replacement of one of its data tables, or (per-unit rates) an edit of its tagger's output. The build
takes about 2 s and is reproducible; the files shipped in asr/core/itn_fst/ were built with the command
above, WeTextProcessing 1.2.0 and pynini 2.1.7 on Python 3.11:

    tagger.fst      1051434 bytes  sha256 65cf47c38614a0780c21fcfef29583be6a7fa3e11087d5301037e87d86b42130
    verbalizer.fst    61894 bytes  sha256 f46e12eb98c4627f20bcb39de12986eca54bcdf3676dd1b0aa35942a7fa7f69a

Rebuild after a change and update these lines (the script prints the sums); tests/test_itn.py checks them.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import os
import sys
from pathlib import Path

try:
    import itn.chinese.inverse_normalizer as wtp_normalizer
    import itn.chinese.rules.measure as wtp_measure
    import pynini
    from itn.chinese.rules.cardinal import Cardinal
    from itn.chinese.rules.date import Date
    from itn.chinese.rules.math import Math
    from itn.chinese.rules.measure import Measure
    from itn.chinese.rules.money import Money
    from itn.chinese.rules.time import Time
    from pynini import accep, cross, union
    from pynini.lib.pynutil import add_weight, delete, insert
    from tn.processor import Processor
    from tn.utils import get_abs_path
except ImportError as e:  # pragma: no cover - a development-time tool
    sys.exit(f"build_itn_fst.py needs WeTextProcessing 1.2.0 and pynini on PYTHONPATH ({e}); see its docstring")

REPO = Path(__file__).resolve().parent.parent
DATA = "../itn/chinese/data/"

#: Counters after which an ordinal's single digit becomes a numeral: 第一名 → 第1名 (but 第一次 stays).
ORDINAL_COUNTERS = ("名", "届", "章", "节", "页", "期", "轮", "条", "款", "项")


def _rows(table: str) -> list[tuple[str, str]]:
    """(spoken, written) rows of one of WeTextProcessing's data tables."""
    with open(get_abs_path(DATA + table), encoding="utf-8") as f:
        return [(row[0], row[1] if len(row) > 1 else row[0]) for row in csv.reader(f, delimiter="\t") if row]


def _map(pairs) -> pynini.Fst:
    """A transducer from each spoken form to its written form (the first written form of a spoken one)."""
    chosen: dict[str, str] = {}
    for spoken, written in pairs:
        chosen.setdefault(spoken, written)
    return union(*(cross(spoken, written) if spoken != written else accep(spoken)
                   for spoken, written in chosen.items())).optimize()


def _spoken(table: str) -> pynini.Fst:
    """Accept the spoken side of a table unchanged: the unit is written as it was said."""
    return union(*sorted({spoken for spoken, _ in _rows(table)})).optimize()


@contextlib.contextmanager
def _patched(module, **names):
    """Swap names in one of WeTextProcessing's modules while one of its rules is built."""
    saved = {name: getattr(module, name) for name in names}
    for name, value in names.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


class HouseCardinal(Cardinal):
    """Cardinals as upstream, plus ordinals whose single digit is converted before a ranking counter."""

    def build_tagger(self):
        super().build_tagger()
        digit = _map(_rows("number/digit.tsv"))
        ordinal = insert('value: "') + accep("第") + digit + union(*ORDINAL_COUNTERS) + insert('"')
        self.tagger = (self.tagger | self.add_tokens(ordinal)).optimize()


class HouseDate(Date):
    """二零二四年三月 → 2024年3月, 二零二三年十二月三十一日 → 2023年12月31日, 五月二十号 → 5月20号."""

    def build_tagger(self):
        # upstream's month and day tables give 03 and 20; ours give 3月 and 20号 (the unit as spoken)
        months = _map((spoken, f"{int(written)}月") for spoken, written in _rows("date/mm.tsv"))
        days = _map((spoken, f"{int(written)}{spoken[-1]}") for spoken, written in _rows("date/dd.tsv"))
        tables = {"date/mm.tsv": months, "date/dd.tsv": days}
        with _patched(sys.modules[Date.__module__], string_file=_tables(tables)):
            super().build_tagger()

    def build_verbalizer(self):
        year = delete('year: "') + self.SIGMA + delete('" ') + insert("年")
        year_only = delete('year: "') + self.SIGMA + delete('"')
        month = delete('month: "') + self.SIGMA + delete('"')
        day = delete(' day: "') + self.SIGMA + delete('"')
        self.verbalizer = self.delete_tokens((year.ques + month + day.ques) | year_only)


class HouseTime(Time):
    """下午三点二十分 → 下午3点20分, 早上八点半 → 早上8点半, 十点零五分 → 10点05分, 三点一刻 → 3点一刻.

    The time of day (上午, 下午, ...) stays a word and goes into the hour field, so that it is written
    before the hour without the verbalizer having to reorder fields."""

    def build_tagger(self):
        hour = _map((spoken, f"{int(written)}点") for spoken, written in _rows("time/hour.tsv"))
        minute = _map((s, "半" if s == "半" else w) for s, w in _rows("time/minute.tsv"))
        minute_zero = _map(_rows("time/minute_zero.tsv"))
        second = _map((spoken, f"{written}秒") for spoken, written in _rows("time/second.tsv") if spoken)
        noon = _spoken("time/noon.tsv")

        def field(name, value, space=" "):
            return insert(f'{space}{name}: "') + value + insert('"')

        minutes = (minute + accep("分").ques) | (minute_zero + accep("分")) | accep("一刻") | accep("三刻")
        seconds = field("second", second).ques
        tagger = field("hour", noon.ques + hour, "") + field("minute", minutes) + seconds
        # "X点零Y" without 分, and an hour alone, only after a time of day (else 三点零五 is a decimal)
        tagger |= field("hour", noon + hour, "") + field("minute", minute_zero) + seconds
        tagger |= field("hour", noon + hour, "")
        self.tagger = self.add_tokens(tagger)

    def build_verbalizer(self):
        hour = delete('hour: "') + self.SIGMA + delete('"')
        minute = delete(' minute: "') + self.SIGMA + delete('"')
        second = delete(' second: "') + self.SIGMA + delete('"')
        self.verbalizer = self.delete_tokens(hour + (minute + second.ques).ques)


class HouseMath(Math):
    """Arithmetic as upstream, but 到 stays a word: 三到五天 → 3到5天 (not 3~5天)."""

    def build_tagger(self):
        operators = _map((s, s if s == "到" else w) for s, w in _rows("math/operator.tsv"))
        with _patched(sys.modules[Math.__module__], string_file=_tables({"math/operator.tsv": operators})):
            super().build_tagger()


class HouseMoney(Money):
    """一百二十五元 → 125元, 三十八美元 → 38美元, 两千五百万人民币 → 2500万人民币, 三块五毛 → 3块5毛:
    the currency stays the word that was said, after the amount."""

    def build_tagger(self):
        currency = _spoken("money/symbol.tsv") | add_weight(_spoken("money/code.tsv"), 1)
        digit = _map(_rows("number/digit.tsv"))
        number = self.cardinal.number if self.enable_0_to_9 else self.cardinal.number_exclude_0_to_9
        number |= digit + insert("~") + digit  # 七八美元 => 7~8美元
        cents = (digit + (accep("毛") | accep("角")) + (digit + accep("分")).ques).ques
        self.tagger = self.add_tokens(insert('value: "') + number + currency + cents + insert('"'))

    def build_verbalizer(self):
        Processor.build_verbalizer(self)  # the value field alone


class HouseMeasure(Measure):
    """Units as spoken (10300米, 30公斤, 36.8度), 到 kept in ranges (3到5天), and a single digit converted
    before a multi-character unit (5公里) and in 一米八 → 1米8."""

    def build_tagger(self):
        keep = {"units_en.tsv": _spoken("measure/units_en.tsv")}
        # upstream writes 到 as ~ and 万/亿/兆 before an English unit as W/00M/T; we keep the words
        kept_words = {"到", "万", "亿", "兆"}

        def house_cross(spoken, written):
            return accep(spoken) if spoken in kept_words else cross(spoken, written)

        with _patched(wtp_measure, string_file=_tables(keep, by_name=True), cross=house_cross):
            super().build_tagger()
        digit = _map(_rows("number/digit.tsv"))
        long_units = union(*sorted({s for s, _ in _rows("measure/units_en.tsv") if len(s) >= 2}))
        extra = insert('value: "') + add_weight(digit + long_units, 0.1) + insert('"')
        extra |= insert('value: "') + digit + accep("米") + digit + insert('"')
        # 每小时十公里: upstream tags numerator 10公里 over denominator 小时 and writes 10km/h; we write
        # 每小时10公里 by turning that token into a plain value (its fields already come in spoken order)
        per = self.build_rule(cross('denominator: "', 'value: "每')) @ self.build_rule(delete('" numerator: "'))
        self.tagger = ((self.tagger @ per) | self.add_tokens(extra)).optimize()


def _tables(replacements: dict[str, pynini.Fst], by_name: bool = False):
    """A ``string_file`` that gives our table for the named data files and reads the others."""

    def string_file(path, *args, **kwargs):
        key = os.path.basename(path) if by_name else "/".join(Path(path).parts[-2:])
        if key in replacements:
            return replacements[key]
        return pynini.string_file(path, *args, **kwargs)

    return string_file


class HouseInverseNormalizer(wtp_normalizer.InverseNormalizer):
    """WeTextProcessing's Chinese ITN with the house rules in place of the upstream ones."""

    def build_tagger_and_verbalizer(self):
        house = {"Cardinal": HouseCardinal, "Date": HouseDate, "Time": HouseTime, "Math": HouseMath,
                 "Money": HouseMoney, "Measure": HouseMeasure}
        with _patched(wtp_normalizer, **house):
            super().build_tagger_and_verbalizer()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "asr" / "core" / "itn_fst")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # the options wetext's own FSTs are built with
    normalizer = HouseInverseNormalizer(cache_dir=str(args.out), overwrite_cache=True, remove_interjections=False,
                                        enable_standalone_number=True, enable_0_to_9=False, enable_million=False)
    sums = []
    for built, name in (("zh_itn_tagger.fst", "tagger.fst"), ("zh_itn_verbalizer.fst", "verbalizer.fst")):
        target = args.out / name
        os.replace(args.out / built, target)
        sums.append(f"{sha256(target)}  {name}")
        print(f"{target}: {target.stat().st_size / 2**20:.2f} MB")
    print("\n".join(sums))
    del normalizer
    return 0


if __name__ == "__main__":
    sys.exit(main())
