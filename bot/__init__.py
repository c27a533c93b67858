"""leadbot: hands leads from field marketing to sales inside Slack."""

__version__ = "0.1.0"
