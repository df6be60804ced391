"""Tests of issue 12's hardening: each replays an attacker's probe against real components."""
