"""AppTest entry point: runs the dashboard's ``app.py`` unchanged.

It lives outside the project root on purpose.  AppTest builds a new Streamlit
page manager for every run, and next to a ``pages/`` folder that manager uses
Streamlit's legacy folder routing (which runs a page file without the frame)
until ``st.navigation`` has been called; in a real server that happens once, in
AppTest on every run.  From here there is no ``pages/`` folder beside the main
script, so every run goes through ``app.py`` as it does in production.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
runpy.run_path(str(ROOT / "app.py"), run_name="__main__")
