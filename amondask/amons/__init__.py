"""Amons: the small H-capped fragments a molecule is made of, with counts and 3D geometries."""
