"""Standard library only: the rules and mechanisms every runtime shares."""
