"""Execute one notebook with nbclient, in the folder that holds it: `run_notebook.py IN.ipynb OUT.ipynb`.

tests/colab runs this script with the Colab-like venv's Python, so that the kernel `python3` is that
venv's ipykernel (jupyter_client starts a kernel spec whose argv is `python` with sys.executable).
The executed notebook goes to OUT, also when a cell fails, for reading its outputs afterwards.
"""
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

src, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
nb = nbformat.read(src, as_version=4)
client = NotebookClient(nb, kernel_name="python3", timeout=3600,
                        resources={"metadata": {"path": str(src.parent)}})
try:
    client.execute()
except CellExecutionError as err:  # its text holds the failing cell and the traceback
    print(err, file=sys.stderr)
    sys.exit(1)
finally:
    nbformat.write(nb, out)
