"""Commands across experiments (not DVC stages): the paper's studies as queued experiments
(ablations), their comparison tables (report), the metric sanity check (baselines) and the speed
benchmark. They import library modules only, never a stage."""
