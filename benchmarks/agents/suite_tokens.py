def tasks():
    return []
