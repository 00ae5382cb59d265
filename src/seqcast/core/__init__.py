"""Foundations: params, paths, errors, atomic files, console and interrupts; no ML."""
