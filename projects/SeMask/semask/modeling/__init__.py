"""SeMask model components; importing this module registers them in detectron2's registries."""

from . import backbone  # noqa: F401
from . import meta_arch  # noqa: F401
from . import heads, pixel_decoder, transformer_decoder  # noqa: F401
