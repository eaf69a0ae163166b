"""The checks on names, passwords and message content."""

from twisted.trial import unittest

from chatd.errors import ChatError, ErrorCode
from chatd.services.text import (
    check_content,
    check_name,
    check_password,
    check_username,
    username_key,
)


class TextTests(unittest.TestCase):
    """Each check accepts what it should and names the field it refuses."""

    def assert_refused(self, code, field, check, *args):
        with self.assertRaises(ChatError) as caught:
            check(*args)
        self.assertEqual((caught.exception.code, caught.exception.field), (code, field))

    def test_username(self):
        """3 to 32 of [A-Za-z0-9_.-]; nothing else, not even look-alikes."""
        self.assertEqual(check_username("a.b-c_9", 3, 32), "a.b-c_9")
        for bad in ("ab", "x" * 33, "a b", "ålice", "ａｌｉｃｅ", "a\x00b", "ab/"):
            self.assert_refused(
                ErrorCode.BAD_REQUEST, "username", check_username, bad, 3, 32
            )

    def test_username_key_folds_case_and_width(self):
        """Keys compare after NFKC and case folding."""
        self.assertEqual(username_key("ALICE"), username_key("alice"))
        self.assertEqual(username_key("ａｌｉｃｅ"), "alice")
        self.assertEqual(username_key("Straße"), username_key("STRASSE"))

    def test_password_counts_utf8_bytes(self):
        """Limits are in UTF-8 bytes; too long is too_large."""
        check_password("ééééé", 8, 1024, "password")
        self.assert_refused(
            ErrorCode.BAD_REQUEST,
            "password",
            check_password,
            "abc",
            8,
            1024,
            "password",
        )
        self.assert_refused(
            ErrorCode.TOO_LARGE,
            "new_password",
            check_password,
            "é" * 513,
            8,
            1024,
            "new_password",
        )

    def test_name(self):
        """Names are stripped, not blank, not too long, free of controls."""
        self.assertEqual(check_name("  Bob  ", "nickname", 64), "Bob")
        self.assertEqual(check_name("漢字 😀", "nickname", 64), "漢字 😀")
        self.assert_refused(
            ErrorCode.BAD_REQUEST, "nickname", check_name, "   ", "nickname", 64
        )
        self.assert_refused(
            ErrorCode.TOO_LARGE, "name", check_name, "x" * 65, "name", 64
        )
        for bad in (
            "a\x00b",
            "a\nb",
            "a\x7fb",
            "a\x85b",
            "a\ud800b",
            "\u202eevil",
            "a\u2066b",
        ):
            self.assert_refused(
                ErrorCode.BAD_REQUEST, "nickname", check_name, bad, "nickname", 64
            )

    def test_content(self):
        """Content keeps newlines and tabs but no other controls."""
        self.assertEqual(
            check_content("line 1\nline 2\ttab\r\n", 4000), "line 1\nline 2\ttab\r\n"
        )
        self.assert_refused(
            ErrorCode.BAD_REQUEST, "content", check_content, "\n ", 4000
        )
        self.assert_refused(
            ErrorCode.TOO_LARGE, "content", check_content, "x" * 4001, 4000
        )
        for bad in ("nul\x00", "bell\x07", "esc\x1b[31m", "\ud83d"):
            self.assert_refused(
                ErrorCode.BAD_REQUEST, "content", check_content, bad, 4000
            )
