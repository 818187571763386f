def make_greeting(greeting: str, name: str) -> str:
    return f"{greeting}, {name}!"
