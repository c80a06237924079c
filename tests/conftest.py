"""The tests never touch the network: downloads are off unless a test mocks the download and turns
them back on (``offline=False`` or ``monkeypatch.delenv("DEJAVU_OFFLINE")``)."""

import os

os.environ["DEJAVU_OFFLINE"] = "1"
