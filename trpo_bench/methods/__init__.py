"""Methods: the step rules, the derivative-free search and the registry (built-ins and plug-ins)."""
