"""Planning: analyzed query -> logical plan -> safety -> optimization."""
