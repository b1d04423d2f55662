"""What every layer uses: the error a user can fix, files written atomically and hashed, progress bars."""
