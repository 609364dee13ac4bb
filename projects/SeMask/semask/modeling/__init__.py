"""SeMask model components; importing this module registers them in detectron2's registries."""
