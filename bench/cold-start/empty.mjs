// A process that does nothing: the cost of starting Node itself, taken off the other two.
