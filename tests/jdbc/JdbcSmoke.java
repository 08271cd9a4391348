// JDBC smoke test for sqld-py: run by tests/e2e/test_jdbc.py against a live site.
// Usage: java -cp .:postgresql.jar JdbcSmoke JDBC_URL USER PASSWORD
// Exit 0 when every check passes; otherwise prints what failed and exits 1.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.Properties;

import org.postgresql.PGStatement;

public class JdbcSmoke {
    static void check(boolean ok, String what) {
        if (!ok) {
            throw new IllegalStateException("check failed: " + what);
        }
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", args[2]);
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            run(conn);
        } catch (Exception e) {
            System.err.println("JDBC smoke failed: " + e);
            e.printStackTrace();
            System.exit(1);
        }
        System.out.println("JDBC smoke OK");
    }

    static void run(Connection conn) throws Exception {
        try (Statement st = conn.createStatement()) {
            st.execute("DROP TABLE IF EXISTS jd");
            st.execute("CREATE TABLE jd (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL)");
        }

        // autocommit off: nothing is visible to others until commit, rollback undoes
        conn.setAutoCommit(false);
        try (PreparedStatement ins = conn.prepareStatement("INSERT INTO jd (id, name, score) VALUES (?, ?, ?)")) {
            for (int i = 1; i <= 10; i++) {  // past prepareThreshold (5): named server statements S_n
                ins.setInt(1, i);
                ins.setString(2, "row " + i);
                ins.setDouble(3, i * 1.5);
                check(ins.executeUpdate() == 1, "insert " + i + " updates one row");
            }
            check(ins.unwrap(PGStatement.class).isUseServerPrepare(), "insert became a server-prepared statement");
        }
        conn.commit();
        try (PreparedStatement ins = conn.prepareStatement("INSERT INTO jd (id, name) VALUES (?, ?)")) {
            ins.setInt(1, 999);
            ins.setString(2, "rolled back");
            ins.executeUpdate();
        }
        conn.rollback();

        // a prepared query reused 10 times, reading ints, strings and doubles
        try (PreparedStatement q = conn.prepareStatement("SELECT id, name, score FROM jd WHERE id = ?")) {
            for (int round = 0; round < 10; round++) {
                int id = round + 1;
                q.setInt(1, id);
                try (ResultSet rs = q.executeQuery()) {
                    check(rs.next(), "row " + id + " found");
                    check(rs.getInt(1) == id, "id " + id);
                    check(rs.getString(2).equals("row " + id), "name of " + id + " was " + rs.getString(2));
                    check(Math.abs(rs.getDouble(3) - id * 1.5) < 1e-9, "score of " + id + " was " + rs.getDouble(3));
                    check(!rs.next(), "one row for " + id);
                }
            }
            check(q.unwrap(PGStatement.class).isUseServerPrepare(), "query became a server-prepared statement");
        }

        // batch insert
        try (PreparedStatement b = conn.prepareStatement("INSERT INTO jd (id, name, score) VALUES (?, ?, ?)")) {
            for (int i = 100; i < 150; i++) {
                b.setInt(1, i);
                b.setString(2, "batch " + i);
                b.setDouble(3, i / 4.0);
                b.addBatch();
            }
            int[] counts = b.executeBatch();
            check(counts.length == 50, "50 batch results, got " + counts.length);
            for (int c : counts) {
                check(c == 1 || c == Statement.SUCCESS_NO_INFO, "batch row count " + c);
            }
        }
        conn.commit();

        conn.setAutoCommit(true);
        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT count(*), sum(id), max(name) FROM jd")) {
            check(rs.next(), "aggregate row");
            check(rs.getLong(1) == 60, "60 rows, got " + rs.getLong(1));
            check(rs.getLong(2) == 55 + 6225, "sum of ids, got " + rs.getLong(2));
            check(rs.getString(3).equals("row 9"), "max name, got " + rs.getString(3));
        }
        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT score FROM jd WHERE id = 149")) {
            check(rs.next() && rs.getDouble(1) == 37.25, "batch score read back");
        }
    }
}
