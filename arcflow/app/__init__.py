"""The web demo (``app.py``): :mod:`.demo` samples a request through the command line's
functions, :mod:`.page` is the Gradio page around it, :mod:`.server` its command line."""
