"""How a render computes, as fast as it can: everything here changes speed, never the function.

:class:`Engine` (``render(..., engine=...)``) is the one argument that chooses among them:

* :mod:`.fast_copy`: a faster copy of the model (BatchNorm folded, fused activations, channels-last, bfloat16);
* :mod:`.fast_conv`: convolutions whose backward computes only the input gradient;
* :mod:`.stages`: which network runs each step (precision stages, taps, ReLU redirection);
* :mod:`.row_split`: a batch's rows run on parallel CPU threads;
* :mod:`.adam`: Adam without ``torch.optim``'s import cost;
* :mod:`.heap`: glibc keeps freed memory while rendering;
* :mod:`.process`: the two process-wide settings (heap, thread count), only when the caller opts in.
"""

from .process import allow_process_tuning, process_tuning_wanted, tuned_process
from .settings import Engine, plan_network
from .stages import PRECISIONS, Stage, StagedNetwork

__all__ = ["Engine", "PRECISIONS", "Stage", "StagedNetwork", "allow_process_tuning", "plan_network",
           "process_tuning_wanted", "tuned_process"]
