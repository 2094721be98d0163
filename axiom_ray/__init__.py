"""axiom-ray: expert iteration for code models on Ray."""
