"""QTasks' import path of the process-wide app binding (``qtasks._state.app_main``).

The bookkeeping lives in ``qtasks.core.apps``; this name is that very module, so reading or
assigning ``qtasks._state.app_main`` reads or assigns the one qtasks uses.
"""

import sys

from qtasks.core import apps

sys.modules[__name__] = apps
