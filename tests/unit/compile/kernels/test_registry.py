"""compile/kernels/registry.py: which ISA a CPU gets, and what every registered ISA declares."""

import numpy as np
import pytest
from edgeopt.compile.kernels import for_arch, get, layers, names


def test_x86_cpus_get_the_best_kernels_they_can_run():
    assert for_arch("x86_64", {"avx2", "avx512f", "avx512vnni"}).name == "vnni"
    assert for_arch("x86_64", {"avx2", "fma"}).name == "avx2"
    assert for_arch("x86_64", {"sse4.2"}).name == "generic"


def test_no_x86_kernels_on_other_architectures():
    isa = for_arch("aarch64", {"neon", "dotprod", "avx2", "avx512vnni"})
    assert isa is None or isa.arch == "aarch64"  # an Arm ISA module may claim it; an x86 one never


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: .*generic"):
        get("nope")


@pytest.mark.parametrize("isa", names())
def test_weight_layout_is_a_permutation_of_one_block(isa):
    """weight_index maps the lanes x 4 weights of a step one to one onto weight_block, so the
    numpy packing and the kernels' TE indexing agree."""
    spec = get(isa)
    lanes = spec.lanes(64)
    cells = {tuple(spec.weight_index(lane, k4)) for lane in range(lanes) for k4 in range(4)}
    assert len(cells) == lanes * 4 == int(np.prod(spec.weight_block(lanes)))
    packed = layers.pack_weights(np.arange(lanes * 4, dtype=np.int8).reshape(lanes, 4), isa=isa, lanes=lanes)
    assert sorted(packed.reshape(-1).tolist()) == list(range(lanes * 4))
