"""Kept answers: the head template gives back the answer it was made from with any Date and ID,
the key leaves out requests whose headers change an answer, and a kept answer outlives neither
its state nor its file."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from server.answers import ENTRY_OVERHEAD, MAX_KEPT, Kept, KeptAnswers, head_template, key_of
from server.web import file_identity

DATE = b"Wed, 02 Dec 2026 08:00:00 GMT"
RID = b"0123456789abcdef0123456789abcdef"
# Header values as the fast path reads them: printable ASCII, `%` and the slots' spelling included.
VALUES = st.text(st.sampled_from("ab%()sdi 09-:;/"), min_size=1, max_size=30).map(str.encode)


def response(date: bytes, rid: bytes, extra: list[bytes], body: bytes) -> bytes:
    lines = [b"HTTP/1.1 200 OK", b"Server: x", b"Date: " + date, *extra, b"X-Request-Id: " + rid]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@given(
    VALUES.filter(lambda v: v.strip() == v),
    VALUES.filter(lambda v: v.strip() == v),
    st.lists(VALUES.map(lambda v: b"X-Other: " + v), max_size=3),
    st.binary(max_size=200),
    st.tuples(VALUES, VALUES),
)
def test_template_gives_the_answer_back_with_any_date_and_id(
    date: bytes, rid: bytes, extra: list[bytes], body: bytes, again: tuple[bytes, bytes]
) -> None:
    date2, rid2 = again
    made = head_template(response(date, rid, extra, body), date, rid)
    assert made is not None
    kept = Kept((), ("p", 0, 0, 0, 0), *made, "pxe", 200, len(body), persistent=True)
    assert kept.bytes_for(date, rid) == response(date, rid, extra, body)
    assert kept.bytes_for(date2, rid2) == response(date2, rid2, extra, body)


def test_template_refuses_heads_without_each_field_once() -> None:
    body = b"Date: " + DATE + b"\r\n"  # in the body, not the head
    assert head_template(response(DATE, RID, [], body), DATE, RID) is not None
    assert head_template(response(DATE, RID, [], b""), DATE, b"other") is None
    assert head_template(response(DATE, RID, [b"Date: " + DATE], b""), DATE, RID) is None
    assert head_template(b"HTTP/1.1 200 OK\r\nDate: x\r\n", b"x", RID) is None  # no end of head


def test_key_leaves_out_headers_that_change_answers() -> None:
    plain = key_of(b"GET", b"/versions", b"HTTP/1.1", {b"host": [b"x"], b"accept": [b"*/*"]})
    assert plain == (b"GET", b"/versions", b"HTTP/1.1", False)
    assert key_of(b"GET", b"/v", b"HTTP/1.1", {b"origin": [b"https://a"]}) is None
    # Persistence as Twisted reads it: "close" among the first Connection line's tokens.
    for values, closing in (
        ([b"close"], True),
        ([b"Keep-Alive CLOSE"], True),
        ([b"keep-alive"], False),
        ([b"upgrade"], False),
        ([b"keep-alive", b"close"], False),
    ):
        assert key_of(b"GET", b"/v", b"HTTP/1.1", {b"connection": values}) == (
            b"GET", b"/v", b"HTTP/1.1", closing,
        )  # fmt: skip
    keys = {
        key_of(m, b"/v", v, {b"connection": c} if c else {})
        for m in (b"GET", b"HEAD")
        for v in (b"HTTP/1.0", b"HTTP/1.1")
        for c in ([], [b"keep-alive"], [b"close"], [b"x"] * 50)
    }
    assert len(keys) == 8


def kept_for(path: Path, state: object = "gen-1", size: int = 10) -> Kept:
    source = file_identity(str(path), os.stat(path))
    return Kept(state, source, b"H %(date)s %(id)s\r\n\r\n", b"x" * size, "r", 200, size, True)


def test_kept_only_while_state_and_file_are_the_same(tmp_path: Path) -> None:
    path = tmp_path / "cmdline"
    path.write_bytes(b"talos.a=1")
    answers = KeptAnswers()
    key = (b"GET", b"/p", b"HTTP/1.1", False)
    answers.put(key, kept_for(path))
    assert answers.get(key, "gen-1") is not None
    assert answers.get(key, "gen-2") is None
    assert answers.get((b"HEAD", b"/p", b"HTTP/1.1", False), "gen-1") is None
    before = path.stat()
    rebuilt = tmp_path / "new"
    rebuilt.write_bytes(b"talos.b=1")  # same size and mtime, another inode
    os.utime(rebuilt, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(rebuilt, path)
    assert answers.get(key, "gen-1") is None
    path.unlink()
    assert answers.get(key, "gen-1") is None


def held_bytes(answers: KeptAnswers) -> int:
    return sum(
        len(key[1]) + len(k.source[0]) + len(k.head) + len(k.body) + ENTRY_OVERHEAD
        for key, k in answers._kept.items()
    )


def test_kept_answers_stay_within_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    budget = 3 * (ENTRY_OVERHEAD + 200)
    answers = KeptAnswers(budget=budget)
    for i in range(20):
        answers.put((b"GET", b"/%d" % i, b"HTTP/1.1", False), kept_for(path, size=30))
        assert answers._held == held_bytes(answers) <= budget
    answers.put((b"GET", b"/19", b"HTTP/1.1", False), kept_for(path, size=5))
    assert answers._held == held_bytes(answers)
    # Long paths count: one spelling of a path per entry cannot outgrow the budget either.
    answers.put((b"GET", b"/" + b"a" * 3000, b"HTTP/1.1", False), kept_for(path, size=1))
    assert answers._held == held_bytes(answers) <= budget


def test_kept_answers_are_bounded_in_number(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    answers = KeptAnswers()
    for i in range(MAX_KEPT * 2 + 10):
        answers.put((b"HEAD", b"/ui//%d" % i, b"HTTP/1.1", False), kept_for(path, size=0))
        assert len(answers) <= MAX_KEPT
