"""Front end 3: the tool registry served over MCP (stdio and streamable HTTP)."""
