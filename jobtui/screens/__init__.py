"""One module (and one .tcss, scoped by the screen selector) per screen."""
