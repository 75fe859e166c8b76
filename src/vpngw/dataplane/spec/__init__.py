"""What charon must run: the desired state (in the API's words) and its VICI rendering."""
