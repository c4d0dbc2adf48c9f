"""`platform-bot-sandbox`: the real bot wired to the stand-ins, and a terminal console to
talk to it as Slack's client would."""
