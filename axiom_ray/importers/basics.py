"""Generated one-function problems at the level of a ~100M-parameter code model -> problems/basics.jsonl.

Why: the embedded SmolLM2-135M solves 1 in 8 samples of axiom-rl's ten (reverse_string nearly
always, the rest almost never) and 6 of 156 samples of the 39 LeetCode-easy training problems,
so expert iteration has almost nothing to learn from and nothing to show. These are problems it
solves *sometimes*: short list, string and number tasks, each a family written once with a
trusted reference, instantiated with several constants and names.

Each family gives one problem per constant (up to 12; the function name varies with it); the tests are
the reference's answers on seeded inputs (computed here, then checked by the determinism check
like every shipped reference). The split is fixed by family and variant: the families listed in
HELDOUT_FAMILIES are held out whole (problems of a kind no round trains on), and in every other
family the last HELDOUT_VARIANTS variants are held out too (new constants and names of a kind it
trained on). Contamination between the two pools is by construction of that kind only, and the
contamination report (`axiom_ray/contamination.py`) lists the near-duplicate pairs.

    .venv/bin/python scripts/import_problems.py basics     # -> problems/basics.jsonl

Pure: standard library only; the references run in this process (they are this file's code).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HELDOUT_VARIANTS = 5  # the last five constants of every family are held out
TESTS = 6
SEED = 20261205

Args = Callable[[random.Random, int], list[Any]]


def _ints(rng: random.Random, lo: int = -20, hi: int = 30, n: tuple[int, int] = (0, 9)) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(*n))]


def _pos(rng: random.Random) -> list[int]:
    return [rng.randint(1, 40) for _ in range(rng.randint(1, 8))]


_WORDS = ("apple", "river", "stone", "cloud", "tiger", "lemon", "ocean", "piano", "green", "eagle",
          "a", "an", "sky", "moon", "data", "code", "level", "noon", "kayak", "python")


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 5)))


def _word(rng: random.Random) -> str:
    return rng.choice(_WORDS) if rng.random() < 0.7 else "".join(rng.choice("abcde") for _ in range(rng.randint(0, 7)))


@dataclass(frozen=True)
class Family:
    """One kind of task. `name`, `prompt` and `reference` are format strings over {k} (the
    variant's constant) and {f} (the function name); `args(rng, k)` draws one test's arguments."""

    key: str
    name: str
    signature: str  # "(nums: list[int]) -> int"
    prompt: str
    reference: str  # the function body, indented four spaces
    args: Args
    constants: tuple[Any, ...] = (2, 3, 4, 5, 6, 7, 9, 10, 8, 11, 12, 15)
    compare: str = "exact"


F = Family
FAMILIES: tuple[Family, ...] = (
    # --- lists of integers ---
    F("sum_greater", "sum_greater_than_{k}", "(nums: list[int]) -> int",
      "Return the sum of the numbers in `nums` that are greater than {k} (0 if there are none).",
      "    return sum(x for x in nums if x > {k})", lambda r, k: [_ints(r)]),
    F("count_divisible", "count_divisible_by_{k}", "(nums: list[int]) -> int",
      "Return how many numbers in `nums` are divisible by {k}.",
      "    return sum(1 for x in nums if x % {k} == 0)", lambda r, k: [_ints(r)]),
    F("times_k", "times_{k}", "(nums: list[int]) -> list[int]",
      "Return a new list with every number of `nums` multiplied by {k}, in the same order.",
      "    return [x * {k} for x in nums]", lambda r, k: [_ints(r)]),
    F("add_k", "add_{k}_to_each", "(nums: list[int]) -> list[int]",
      "Return a new list with {k} added to every number of `nums`, in the same order.",
      "    return [x + {k} for x in nums]", lambda r, k: [_ints(r)]),
    F("remove_k", "remove_all_{k}", "(nums: list[int]) -> list[int]",
      "Return `nums` without any occurrence of the number {k}, keeping the order of the rest.",
      "    return [x for x in nums if x != {k}]", lambda r, k: [[r.choice([k, k, r.randint(0, 12)]) for _ in range(r.randint(0, 8))]]),
    F("count_k", "count_of_{k}", "(nums: list[int]) -> int",
      "Return how many times the number {k} appears in `nums`.",
      "    return nums.count({k})", lambda r, k: [[r.choice([k, r.randint(0, 12)]) for _ in range(r.randint(0, 9))]]),
    F("below_k", "numbers_below_{k}", "(nums: list[int]) -> list[int]",
      "Return the numbers of `nums` that are smaller than {k}, in their original order.",
      "    return [x for x in nums if x < {k}]", lambda r, k: [_ints(r)]),
    F("max_minus_min", "spread_plus_{k}", "(nums: list[int]) -> int",
      "`nums` is a non-empty list. Return the largest number minus the smallest number, plus {k}.",
      "    return max(nums) - min(nums) + {k}", lambda r, k: [_ints(r, n=(1, 9))]),
    F("sum_squares", "sum_of_squares_times_{k}", "(nums: list[int]) -> int",
      "Return {k} times the sum of the squares of the numbers in `nums`.",
      "    return {k} * sum(x * x for x in nums)", lambda r, k: [_ints(r, -9, 9)]),
    F("every_kth", "every_{k}th", "(nums: list[int]) -> list[int]",
      "Return every {k}th element of `nums` starting with the first one (indices 0, {k}, 2*{k}, ...).",
      "    return nums[::{k}]", lambda r, k: [_ints(r, n=(0, 14))]),
    F("first_k", "first_{k}", "(nums: list[int]) -> list[int]",
      "Return the first {k} elements of `nums` (the whole list if it is shorter).",
      "    return nums[:{k}]", lambda r, k: [_ints(r)]),
    F("count_negative", "count_below_minus_{k}", "(nums: list[int]) -> int",
      "Return how many numbers in `nums` are smaller than -{k}.",
      "    return sum(1 for x in nums if x < -{k})", lambda r, k: [_ints(r, -15, 15)]),
    F("product_mod", "product_mod_{k}", "(nums: list[int]) -> int",
      "Return the product of all numbers in `nums`, modulo {k} (the product of an empty list is 1).",
      "    p = 1\n    for x in nums:\n        p *= x\n    return p % {k}", lambda r, k: [_pos(r)]),
    F("evens_times", "double_evens_plus_{k}", "(nums: list[int]) -> list[int]",
      "Return a list of the even numbers of `nums`, each plus {k}, in their original order.",
      "    return [x + {k} for x in nums if x % 2 == 0]", lambda r, k: [_ints(r)]),
    F("index_of_k", "index_of_{k}", "(nums: list[int]) -> int",
      "Return the index of the first occurrence of {k} in `nums`, or -1 if {k} is not in it.",
      "    return nums.index({k}) if {k} in nums else -1",
      lambda r, k: [[r.choice([k, r.randint(0, 12), r.randint(0, 12)]) for _ in range(r.randint(0, 8))]]),
    # --- strings ---
    F("count_char", "count_letter_{k}", "(s: str) -> int",
      "Return how many times the letter '{k}' appears in the string `s`.",
      "    return s.count('{k}')", lambda r, k: [_text(r)], constants=tuple("aeionrstlmcd")),
    F("replace_char", "replace_{k}_with_star", "(s: str) -> str",
      "Return the string `s` with every letter '{k}' replaced by '*'.",
      "    return s.replace('{k}', '*')", lambda r, k: [_text(r)], constants=tuple("aeionrstlmcd")),
    F("starts_with", "starts_with_{k}", "(s: str) -> bool",
      "Return True if the string `s` starts with the letter '{k}', otherwise False.",
      "    return s.startswith('{k}')", lambda r, k: [r.choice([k, ""]) + _word(r)], constants=tuple("acdeglmprstk")),
    F("repeat", "repeat_{k}_times", "(s: str) -> str",
      "Return the string `s` repeated {k} times, with nothing between the copies.",
      "    return s * {k}", lambda r, k: [_word(r)], constants=(2, 3, 4, 5, 1, 6, 7, 8, 9, 10, 11, 12)),
    F("last_k_chars", "last_{k}_chars", "(s: str) -> str",
      "Return the last {k} characters of `s` (all of `s` if it is shorter).",
      "    return s[-{k}:]", lambda r, k: [_text(r)], constants=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)),
    F("words_longer", "count_words_longer_than_{k}", "(s: str) -> int",
      "`s` holds words separated by single spaces. Return how many words have more than {k} letters.",
      "    return sum(1 for w in s.split() if len(w) > {k})", lambda r, k: [_text(r)], constants=(1, 2, 3, 4, 5, 6, 0, 7)),
    F("pad_left", "pad_to_{k}", "(s: str) -> str",
      "Return `s` with '-' characters added on its left until it is {k} characters long (unchanged if it is already that long or longer).",
      "    return s.rjust({k}, '-')", lambda r, k: [_word(r)], constants=(3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)),
    F("vowel_count", "vowels_plus_{k}", "(s: str) -> int",
      "Return the number of vowels (a, e, i, o, u) in the lowercase string `s`, plus {k}.",
      "    return sum(1 for c in s if c in 'aeiou') + {k}", lambda r, k: [_text(r)]),
    F("upper_kth", "upper_every_{k}", "(s: str) -> str",
      "Return `s` with the characters at indices 0, {k}, 2*{k}, ... turned to upper case; the rest unchanged.",
      "    return ''.join(c.upper() if i % {k} == 0 else c for i, c in enumerate(s))", lambda r, k: [_text(r)]),
    F("join_words", "join_with_{k}", "(words: list[str]) -> str",
      "Return the words of the list `words` joined into one string with '{k}' between each pair.",
      "    return '{k}'.join(words)", lambda r, k: [[_word(r) for _ in range(r.randint(0, 4))]],
      constants=("-", "+", ",", ";", ":", "_", "/", "|", "#", "*", "=", "~")),
    # --- numbers ---
    F("digit_sum", "digit_sum_times_{k}", "(n: int) -> int",
      "`n` is a non-negative integer. Return {k} times the sum of its decimal digits.",
      "    return {k} * sum(int(d) for d in str(n))", lambda r, k: [r.randint(0, 10**r.randint(1, 7))]),
    F("multiples_sum", "sum_of_multiples_of_{k}", "(n: int) -> int",
      "Return the sum of all multiples of {k} from 1 to `n` inclusive (0 if there are none).",
      "    return sum(x for x in range(1, n + 1) if x % {k} == 0)", lambda r, k: [r.randint(0, 60)]),
    F("is_multiple", "is_multiple_of_{k}", "(n: int) -> bool",
      "Return True if the integer `n` is a multiple of {k}, otherwise False.",
      "    return n % {k} == 0", lambda r, k: [r.choice([k * r.randint(-9, 9), r.randint(-50, 50)])]),
    F("power", "power_of_{k}", "(n: int) -> int",
      "`n` is a non-negative integer. Return {k} raised to the power `n`.",
      "    return {k} ** n", lambda r, k: [r.randint(0, 12)]),
    F("clamp", "clamp_to_{k}", "(n: int) -> int",
      "Return `n` if it lies between -{k} and {k} inclusive; otherwise return the nearer of -{k} and {k}.",
      "    return max(-{k}, min({k}, n))", lambda r, k: [r.randint(-15, 15)]),
    F("count_digits", "count_digit_{k}", "(n: int) -> int",
      "`n` is a non-negative integer. Return how many of its decimal digits are equal to {k}.",
      "    return str(n).count('{k}')", lambda r, k: [r.randint(0, 10**r.randint(1, 8))], constants=(1, 2, 3, 4, 5, 7, 8, 9, 0, 6)),
    F("between", "in_range_{k}", "(n: int) -> bool",
      "Return True if `n` is between {k} and {k} * 10 inclusive, otherwise False.",
      "    return {k} <= n <= {k} * 10", lambda r, k: [r.randint(0, 12 * k)]),
    F("triangle", "triangle_plus_{k}", "(n: int) -> int",
      "`n` is a non-negative integer. Return 1 + 2 + ... + n (0 when n is 0), plus {k}.",
      "    return n * (n + 1) // 2 + {k}", lambda r, k: [r.randint(0, 100)]),
    F("divide_round", "average_with_{k}", "(nums: list[int]) -> float",
      "`nums` is a non-empty list. Return the average of its numbers plus {k}, as a float.",
      "    return sum(nums) / len(nums) + {k}", lambda r, k: [_ints(r, n=(1, 8))], compare="float"),
)

# Families held out whole: no round trains on their kind.
HELDOUT_FAMILIES = frozenset({"count_negative", "index_of_k", "pad_left", "join_words", "clamp",
                              "count_digits", "evens_times", "upper_kth"})


_SYMBOL_NAMES = {"-": "dash", "+": "plus", ",": "comma", ";": "semicolon", ":": "colon", "_": "underscore",
                 "/": "slash", "|": "pipe", "#": "hash", "*": "star", "=": "equals", "~": "tilde"}


def _unique_args(family: Family, k: Any, rng: random.Random) -> list[list[Any]]:
    out: list[list[Any]] = []
    seen: set[str] = set()
    for _ in range(200):
        args = family.args(rng, k)
        key = json.dumps(args)
        if key not in seen:
            seen.add(key)
            out.append(args)
        if len(out) == TESTS + 1:
            break
    return out


def _call_text(fn: str, args: list[Any], result: Any) -> str:
    return f"{fn}({', '.join(repr(a) for a in args)}) returns {result!r}"


def build_problem(family: Family, variant: int) -> dict[str, Any]:
    """The problem for `family`'s `variant`-th constant: prompt, reference, tests, split."""
    k = family.constants[variant]
    fn = family.name.format(k=_SYMBOL_NAMES.get(str(k), k))
    reference = f"def {fn}{family.signature}:\n" + family.reference.format(k=k) + "\n"
    namespace: dict[str, Any] = {}
    exec(compile(reference, fn, "exec"), namespace)  # trusted: this module's own code
    rng = random.Random(f"{SEED}/{family.key}/{variant}")
    cases = [(args, namespace[fn](*json.loads(json.dumps(args)))) for args in _unique_args(family, k, rng)]
    example, hidden = cases[0], cases[1:]
    prompt = (f"{family.prompt.format(k=k)}\n\nFunction signature:\ndef {fn}{family.signature}:\n\n"
              f"Example:\n{_call_text(fn, *example)}\n")
    heldout = family.key in HELDOUT_FAMILIES or variant >= len(family.constants) - HELDOUT_VARIANTS
    problem = {
        "id": f"basic_{family.key}_{variant}",
        "title": f"{family.key} ({k})",
        "difficulty": "easy",
        "split": "heldout" if heldout else "train",
        "entry_point": fn,
        "prompt": prompt,
        "tests": [{"args": args, "expected": result} for args, result in hidden],
        "reference": reference,
    }
    if family.compare != "exact":
        problem["compare"] = family.compare
    return problem


def build_all() -> list[dict[str, Any]]:
    return [build_problem(f, v) for f in FAMILIES for v in range(len(f.constants))]
