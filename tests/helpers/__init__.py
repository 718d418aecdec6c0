"""What several test modules share: stand-in servers, certificates, scrapes, clocks."""
