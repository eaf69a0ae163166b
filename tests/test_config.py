"""chatd.ini parsing: defaults, errors that name section.key, the shipped file."""

import configparser
from dataclasses import fields
from pathlib import Path

from twisted.trial import unittest

from chatd.config import Config, ConfigError, load_config, parse_config

SHIPPED = Path(__file__).resolve().parent.parent / "etc" / "chatd.ini"


class ConfigTests(unittest.TestCase):
    """Reading chatd.ini into a Config."""

    def test_no_file_means_defaults(self):
        """Without a path every option has its documented default."""
        config = load_config(None)
        self.assertEqual(config, Config())
        self.assertEqual(config.server.endpoint, "tcp:8765")
        self.assertEqual(config.database.backend, "sqlite")
        self.assertEqual(config.security.bcrypt_cost, 12)
        self.assertEqual(config.presence.online_users, "all")

    def test_values_are_typed(self):
        """Numbers, lists and choices are read into their types."""
        config = parse_config(
            "[server]\nallowed_origins = https://a.example, https://b.example\n"
            "[security]\nbcrypt_cost = 10\nrate_limit = 2.5\n"
            "[presence]\nonline_users = friends\n"
        )
        self.assertEqual(
            config.server.allowed_origins, ("https://a.example", "https://b.example")
        )
        self.assertEqual(config.security.bcrypt_cost, 10)
        self.assertEqual(config.security.rate_limit, 2.5)
        self.assertEqual(config.presence.online_users, "friends")

    def test_errors_name_section_and_key(self):
        """Each kind of mistake raises one ConfigError naming section.key."""
        cases = {
            "[server]\nendpont = tcp:1\n": "server.endpont: unknown option",
            "[sever]\nendpoint = tcp:1\n": "sever: unknown section",
            "[security]\nbcrypt_cost = twelve\n": "security.bcrypt_cost:",
            "[security]\nbcrypt_cost = 2\n": "security.bcrypt_cost: must be at least",
            "[security]\nbcrypt_cost = 32\n": "security.bcrypt_cost: must be at most 31",
            "[database]\nbackend = mysql\n": "database.backend: must be one of",
            "[presence]\nonline_users = some\n": "presence.online_users: must be",
            "[security]\nusername_min_length = 40\n": "security.username_min_length",
        }
        for text, expected in cases.items():
            with self.assertRaises(ConfigError) as caught:
                parse_config(text)
            self.assertIn(expected, str(caught.exception))
            self.assertNotIn("\n", str(caught.exception))

    def test_syntax_error(self):
        """A line outside any section is reported in one line."""
        with self.assertRaises(ConfigError) as caught:
            parse_config("endpoint = tcp:1\n", source="x.ini")
        self.assertTrue(str(caught.exception).startswith("x.ini: "))

    def test_missing_file(self):
        """A path that cannot be read is a ConfigError, not a traceback."""
        with self.assertRaises(ConfigError) as caught:
            load_config(self.mktemp())
        self.assertIn("cannot read", str(caught.exception))


class ShippedConfigTests(unittest.TestCase):
    """etc/chatd.ini documents every option with its default."""

    def test_shipped_file_is_the_defaults(self):
        """Parsing the shipped file gives exactly the built-in defaults."""
        self.assertEqual(load_config(str(SHIPPED)), Config())

    def test_every_option_is_listed_and_commented(self):
        """Each option of every section appears, after a comment line."""
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str
        parser.read(SHIPPED)
        lines = SHIPPED.read_text().splitlines()
        for section in fields(Config):
            listed = (
                set(parser[section.name]) if parser.has_section(section.name) else set()
            )
            expected = {f.name for f in fields(section.default_factory)}
            self.assertEqual(listed, expected, section.name)
        for index, line in enumerate(lines):
            if "=" in line and not line.startswith("#"):
                previous = lines[index - 1]
                self.assertTrue(
                    previous.startswith("#") or "=" in previous,
                    f"no comment above: {line}",
                )
