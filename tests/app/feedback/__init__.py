"""Tests of `app.feedback`: the store, its database set-up, and what it promises under stress."""
