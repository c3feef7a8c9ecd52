import sys
from pathlib import Path

import torch

# the tests use tiny models, for which extra threads cost more than they give
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))
