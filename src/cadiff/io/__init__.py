"""The bottom I/O layer: files that appear whole or not at all (atomic writes, locks, JSON that refuses NaN), the
folders of cadiff's outputs and their manifests, and run folders with their run.json. Every other package builds
on these; they import no other part of cadiff but its errors and version."""
