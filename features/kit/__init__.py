"""What every feature is made of: its context and ports, commands and their arguments,
buttons and forms, and the registry each feature adds itself to."""
