"""The engine that turns a config and a grid into results: the grid and its static/dynamic
split (`grid`), the execution plan (`plan`, `calibrate`), one member's compiled program
(`train`), the recorded metrics (`metrics`, `curvature`, `probes`), the sweep over static groups
(`sweep`), checkpoints and run directories (`checkpoint`, `rundir`), the results Dataset
(`results`) and the persistent compilation cache (`compile_cache`). See docs/architecture.md.
"""
