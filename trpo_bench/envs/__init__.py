"""Environments: the registry of supported tasks, Atari preprocessing, MuJoCo's vector stepper and
exact state restore."""
