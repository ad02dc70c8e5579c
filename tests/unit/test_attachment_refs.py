"""Attachment references and the upload check: what each accepts and how each refusal reads."""

from __future__ import annotations

import pytest

from vestnik.shared.attachment_refs import AttachmentRef, parse
from vestnik.workers.attachments import check_upload


@pytest.mark.parametrize(("text", "ref"), [
    ("https://crm.example.com/inv/7.pdf", AttachmentRef("url", "https://crm.example.com/inv/7.pdf")),
    (" file:12 ", AttachmentRef("file", "12")),
    ("tg:BQACAgIAAxkBAAIBZ2Vw-_x", AttachmentRef("telegram_file_id", "BQACAgIAAxkBAAIBZ2Vw-_x")),
])
def test_the_three_sources_are_read_and_written_back_alike(text, ref):
    assert parse(text) == ref and parse(str(ref)) == ref


@pytest.mark.parametrize("text", ["file:0", "file:abc", "tg:short", "tg:has space in it", "C:/x.pdf",
                                  "ftp://x/y.pdf", "javascript:alert(1)", "", None, 12, ["file:1"]])
def test_anything_else_is_refused_saying_what_a_reference_is(text):
    with pytest.raises(ValueError, match="is not an attachment: give an http"):
        parse(text)


def test_an_upload_is_named_typed_by_its_name_and_its_bytes_must_match():
    assert check_upload("C:\\Users\\anna\\Прайс.pdf", b"%PDF-1.7 x") == ("Прайс.pdf", "application/pdf")
    assert check_upload("list.csv", "имя;класс\n".encode()) == ("list.csv", "text/csv")
    assert check_upload("t.xlsx", b"PK\x03\x04...")[1].endswith("spreadsheetml.sheet")
    for name, content, says in [("a.pdf", b"<html>", "the content is not a application/pdf file"),
                                ("a.exe", b"MZ", "is not a file to attach"), ("a", b"x", "is not a file to attach"),
                                ("a.html", b"<p>", "text/html is not a file to attach"),
                                ("a.txt", "я".encode("cp1251"), "must be UTF-8"), ("a.pdf", b"", "is empty"),
                                ("", b"%PDF-", "needs a name")]:
        with pytest.raises(ValueError, match=says):
            check_upload(name, content)
