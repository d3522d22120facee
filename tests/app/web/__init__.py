"""Tests of the web page and the routes made for it: title search, the loss plot, the page in a browser."""
