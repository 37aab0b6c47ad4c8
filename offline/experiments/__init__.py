"""Offline experiment work: log readers, statistics, reports and an end-to-end simulation."""
