"""Use cases: what the command line (and other front ends) call, one function each.

`training.train_folder` (train), `calibrate.calibrate_bundle` (calibrate), `update.update_from_reviews`
(update), `evaluation.evaluate_folders` (evaluate), `doctor.check_station` (doctor),
`benchmark.run_benchmark` (benchmark). Each takes plain values and callbacks for progress
(`progress.Progress`) and warnings, raises `InspectorError`s the user can act on, and returns
what a front end prints; none of them prints.
"""
